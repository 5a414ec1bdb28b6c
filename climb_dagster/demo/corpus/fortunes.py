"""fortune(6) cookie files (`%`-separated) to packed groups of cookies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from climb_dagster.demo.corpus.clean import clean_text
from climb_dagster.demo.corpus.dictd import pack_entries
from climb_dagster.demo.corpus.unit import Unit

_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)
# Files whose jokes target groups of people, and non-prose art/meta files.
SKIPPED_FILES = frozenset({"ethnic", "men-women", "politics", "art", "ascii-art", "translate-me"})


def parse_cookies(text: str) -> list[str]:
    """The cookies of one fortune file, cleaned; a cookie's inner blank lines become single newlines."""
    cookies = []
    for raw in _SEPARATOR.split(text):
        body = "\n".join(line for line in clean_text(raw).split("\n") if line)
        if body:
            cookies.append(body)
    return cookies


def fortune_units(path: Path, domain: str, source: str, unit_words: int = 1200) -> Iterator[Unit]:
    """Units of one cookie file: consecutive cookies packed to about `unit_words` words."""
    cookies = parse_cookies(path.read_bytes().decode("utf-8", errors="replace"))
    entries = [(f"#{i + 1}", c) for i, c in enumerate(cookies)]
    yield from pack_entries(entries, domain, source, f"fortunes/{path.name}", unit_words)
