"""GNU info manuals to one unit per node (nodes are separated by `\\x1f`)."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from climb_dagster.demo.corpus.clean import split_paragraphs
from climb_dagster.demo.corpus.unit import Unit

_NODE = re.compile(r"^File: [^,]+,\s+Node: ([^,\n]+)")
_UNDERLINE = re.compile(r"^[*=\-.]{3,}$")
# Menu items (`* Name:: description`) and cross references are navigation, not text.
_MENU_ITEM = re.compile(r"^\* .*::")


def parse_info(text: str) -> list[tuple[str, list[str]]]:
    """(node name, paragraphs) of every text node; tag tables and index nodes are dropped."""
    nodes = []
    for part in text.split("\x1f"):
        part = part.lstrip("\n")
        match = _NODE.match(part)
        if not match:
            continue
        name = match.group(1).strip()
        if "Index" in name.split():
            continue
        body_lines = part.split("\n")[1:]
        kept = [
            line
            for line in body_lines
            if not _UNDERLINE.match(line.strip()) and not _MENU_ITEM.match(line) and line.strip() != "* Menu:"
        ]
        paragraphs = split_paragraphs("\n".join(kept))
        if paragraphs:
            nodes.append((name, paragraphs))
    return nodes


def _part_number(path: Path) -> int:
    match = re.search(r"\.info-(\d+)\.gz$", path.name)
    return int(match.group(1)) if match else 0


def info_units(paths: list[Path], domain: str, source: str, manual: str) -> Iterator[Unit]:
    """Units of one manual split over `name.info-N.gz` parts, read in part order."""
    for path in sorted(paths, key=_part_number):
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        for name, paragraphs in parse_info(text):
            yield Unit(domain, source, f"{manual}: {name}", paragraphs)
