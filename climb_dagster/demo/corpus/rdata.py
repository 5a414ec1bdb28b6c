"""Character vectors out of an R lazy-load database (`.rdx` index + `.rdb` data), without R.

Enough of R's XDR serialization format (version 2 and 3) to read the Jane Austen novels of
r-cran-janeaustenr: vectors, pairlists, symbols, strings, attributes and back-references.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from climb_dagster.demo.corpus.clean import clean_text
from climb_dagster.demo.corpus.unit import Unit

_NIL, _REF, _ALTREP = 254, 255, 238
# Singletons that carry no payload (environments, missing argument, unbound value ...).
_SPECIAL = {241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def header(self) -> None:
        if self.data[:2] != b"X\n":
            raise ValueError(f"not an XDR R serialization (starts {self.data[:2]!r})")
        self.pos = 2
        version = self.int()
        self.int(), self.int()
        if version == 3:
            n = self.int()  # native encoding name: read before moving pos (`+=` would use the old pos)
            self.pos += n

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two ints
            n = (self.int() << 32) + self.int()
        return n

    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind == _NIL or kind in _SPECIAL:
            return None
        if kind == _REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == 1:  # SYMSXP
            name = self.item()
            self.refs.append(name)
            return name
        if kind in (2, 6, 17, 4):  # pairlist-like: [attr] [tag] car cdr
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            out = {tag: self.item()}
            rest = self.item()
            if isinstance(rest, dict):
                out.update(rest)
            del attr
            return out
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            value = self.data[self.pos : self.pos + n].decode("utf-8", errors="replace")
            self.pos += n
            return value
        if kind in (10, 13):  # logical, integer
            n = self.length()
            values = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == 14:  # double
            n = self.length()
            values = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind in (16, 19, 20):  # character vector, list, expression
            values = [self.item() for _ in range(self.length())]
        elif kind == _ALTREP:
            self.item()  # class info
            values = self.item()  # state; enough for compact sequences and wrappers
            self.item()
            return values
        else:
            raise ValueError(f"unsupported R SEXP type {kind} at byte {self.pos - 4}")
        attrs = self.item() if has_attr else None
        if isinstance(attrs, dict) and isinstance(attrs.get("names"), list) and kind == 19:
            return dict(zip(attrs["names"], values, strict=True))
        return values


def unserialize(data: bytes) -> Any:
    """One R object from XDR serialization bytes."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def read_lazyload(rdx: bytes, rdb: bytes) -> dict[str, Any]:
    """Every variable of a lazy-load database; rdb records are a big-endian length then a zlib stream."""
    index = unserialize(gzip.decompress(rdx) if rdx[:2] == b"\x1f\x8b" else zlib.decompress(rdx[4:]))
    out = {}
    for name, (offset, length) in index["variables"].items():
        record = rdb[offset : offset + length]
        out[name] = unserialize(zlib.decompress(record[4:]))
    return out


_CHAPTER = re.compile(r"^chapter\s+([0-9]+|[ivxlc]+)\b", re.IGNORECASE)
AUSTEN_TITLES = {
    "emma": "Emma",
    "mansfieldpark": "Mansfield Park",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
    "prideprejudice": "Pride and Prejudice",
    "sensesensibility": "Sense and Sensibility",
}


def novel_units(lines: list[str | None], domain: str, source: str, book: str) -> Iterator[Unit]:
    """Units of a novel given as text lines (blank lines between paragraphs), one per chapter."""
    title, paragraphs, current = f"{book}: front matter", [], []
    for line in [*lines, ""]:
        line = (line or "").strip()
        # A chapter heading line starts a unit whether or not a blank line follows it.
        heading = bool(_CHAPTER.match(line)) and len(line.split()) <= 4
        if line and not heading:
            current.append(line)
            continue
        if current:
            paragraphs.append(clean_text(" ".join(current)))
            current = []
        if heading:
            if paragraphs:
                yield Unit(domain, source, title, paragraphs)
            title, paragraphs = f"{book}: {line}", []
    if paragraphs:
        yield Unit(domain, source, title, paragraphs)


def austen_units(data_dir: Path, domain: str, source: str) -> Iterator[Unit]:
    """Units of the six novels in janeaustenr's `data/Rdata.{rdx,rdb}`, novels in alphabetical order."""
    variables = read_lazyload((data_dir / "Rdata.rdx").read_bytes(), (data_dir / "Rdata.rdb").read_bytes())
    for name in sorted(AUSTEN_TITLES):
        if name in variables:
            yield from novel_units(variables[name], domain, source, AUSTEN_TITLES[name])
