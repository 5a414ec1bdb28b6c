"""dictd databases (`.index` + gzip `.dict.dz`) to packed groups of dictionary entries."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from climb_dagster.demo.corpus.clean import clean_text, word_count
from climb_dagster.demo.corpus.unit import Unit

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}


def decode_b64_number(text: str) -> int:
    """dictd's index numbers: big-endian base-64 digits, no padding (`"BA"` is 64)."""
    value = 0
    for char in text:
        if char not in _B64_VALUE:
            raise ValueError(f"not a dictd base-64 number: {text!r}")
        value = value * 64 + _B64_VALUE[char]
    return value


def read_entries(index_text: str, dict_bytes: bytes) -> list[tuple[str, str]]:
    """(headword, definition) pairs in file order; one per distinct definition, database metadata skipped.

    Args:
        index_text: the `.index` file: `headword<TAB>offset<TAB>length` lines, numbers in dictd base 64.
        dict_bytes: the uncompressed `.dict` data the offsets point into.
    """
    seen: dict[tuple[int, int], str] = {}
    for line in index_text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith(("00-database", "00database")):
            continue
        span = (decode_b64_number(fields[1]), decode_b64_number(fields[2]))
        # Synonyms in WordNet and inflections in GCIDE share one definition: keep its first headword.
        seen.setdefault(span, fields[0])
    entries = []
    for (offset, length), headword in sorted(seen.items()):
        text = dict_bytes[offset : offset + length].decode("utf-8", errors="replace")
        # One entry is one paragraph, so chunks break between entries, never inside one.
        body = "\n".join(line for line in clean_text(text).split("\n") if line)
        if body:
            entries.append((headword, body))
    return entries


def pack_entries(
    entries: list[tuple[str, str]], domain: str, source: str, name: str, unit_words: int
) -> Iterator[Unit]:
    """Group consecutive entries into units of about `unit_words` words titled by their first/last headword."""
    group: list[tuple[str, str]] = []
    n = 0
    for headword, body in entries:
        group.append((headword, body))
        n += word_count(body)
        if n >= unit_words:
            yield Unit(domain, source, f"{name}: {group[0][0]} – {group[-1][0]}", [b for _, b in group])
            group, n = [], 0
    if group:
        yield Unit(domain, source, f"{name}: {group[0][0]} – {group[-1][0]}", [b for _, b in group])


def dictd_units(
    index: Path, dict_dz: Path, domain: str, source: str, unit_words: int = 1200
) -> Iterator[Unit]:
    """Units of one dictd database on disk."""
    entries = read_entries(
        index.read_text(encoding="utf-8", errors="replace"), gzip.decompress(dict_dz.read_bytes())
    )
    name = index.name.removesuffix(".index")
    yield from pack_entries(entries, domain, source, name, unit_words)
