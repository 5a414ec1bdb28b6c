"""SWORD zCom4 commentary modules (Matthew Henry's Concise Commentary), one unit per chapter.

A zCom4 `.bzs` file is an index of (offset, compressed size, size) uint32 triples into the `.bzz`
file of zlib blocks; each block holds one book of OSIS XML. The verse index (`.bzv`) is not needed
to read everything in order.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from climb_dagster.demo.corpus.clean import split_paragraphs
from climb_dagster.demo.corpus.unit import Unit

_CHAPTER = re.compile(r'<chapter [^>]*osisID="([^"]+)"[^>]*/>')
_BOOK_NAME = re.compile(r'<milestone n="([^"]+)" type="x-usfm-toc1"/>')
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.DOTALL)
_BREAK = re.compile(
    r'<div [^>]*type="x-p"[^>]*/>|</row>|<lb/>|<div [^>]*type="(introduction|section)"[^>]*/>'
)
_TAG = re.compile(r"<[^>]+>")


def read_zcom4_blocks(bzs: bytes, bzz: bytes) -> list[str]:
    """Decompressed text of every block, in index order."""
    blocks = []
    for i in range(len(bzs) // 12):
        offset, size, _ = struct.unpack_from("<III", bzs, i * 12)
        blocks.append(zlib.decompress(bzz[offset : offset + size]).decode("utf-8", errors="replace"))
    return blocks


def osis_paragraphs(osis: str) -> list[str]:
    """Plain paragraphs of an OSIS fragment: titles and `x-p` divisions become paragraph breaks."""
    text = _TITLE.sub(lambda m: f"\n\n{m.group(1)}\n\n", osis)
    text = _BREAK.sub("\n\n", text)
    text = html.unescape(_TAG.sub(" ", text))
    return split_paragraphs(text)


def zcom4_units(module_dir: Path, domain: str, source: str, name: str) -> Iterator[Unit]:
    """Units of a module (`ot` then `nt` testament), one per chapter titled `<name> <book> <chapter>`."""
    for testament in ("ot", "nt"):
        bzs = (module_dir / f"{testament}.bzs").read_bytes()
        bzz = (module_dir / f"{testament}.bzz").read_bytes()
        for block in read_zcom4_blocks(bzs, bzz):
            book_match = _BOOK_NAME.search(block)
            parts = _CHAPTER.split(block)
            # parts = [before first chapter, osisID, chapter text, osisID, chapter text, ...]
            for osis_id, chapter in zip(parts[1::2], parts[2::2], strict=True):
                paragraphs = osis_paragraphs(chapter)
                book = book_match.group(1) if book_match else osis_id.split(".")[0]
                if paragraphs:
                    yield Unit(domain, source, f"{name} {book} {osis_id.split('.')[-1]}", paragraphs)
