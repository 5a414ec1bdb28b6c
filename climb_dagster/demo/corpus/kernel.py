"""Linux kernel documentation (reStructuredText and plain text, gzipped), one unit per file."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from climb_dagster.demo.corpus.clean import split_paragraphs
from climb_dagster.demo.corpus.unit import Unit

# Section adornments, and reST directives/labels/field lists that are markup rather than text.
_ADORNMENT = re.compile(r"^([=\-~^*#+`:.'\"_])\1{2,}$")
_MARKUP = re.compile(r"^(\.\. (_[^:]+:|[\w:-]+::|SPDX)|:[a-z-]+:( |$))")


def rst_paragraphs(text: str) -> list[str]:
    """Paragraphs of a reST/plain document with adornment lines and directive/label lines removed."""
    kept = [
        line
        for line in text.split("\n")
        if not _ADORNMENT.match(line.strip()) and not _MARKUP.match(line.strip())
    ]
    return split_paragraphs("\n".join(kept))


def kernel_units(documentation: Path, domain: str, source: str) -> Iterator[Unit]:
    """Units of every `.rst.gz`/`.txt.gz` under `documentation`, skipping `translations/`."""
    for path in sorted(documentation.rglob("*.gz")):
        rel = path.relative_to(documentation).as_posix()
        if rel.startswith("translations/") or not rel.endswith((".rst.gz", ".txt.gz")):
            continue
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        paragraphs = rst_paragraphs(text)
        if paragraphs:
            yield Unit(domain, f"{source}:{rel.removesuffix('.gz')}", rel.removesuffix(".gz"), paragraphs)
