"""Licence texts: /usr/share/common-licenses and the packages' copyright files, paragraphs deduplicated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from climb_dagster.demo.corpus.clean import split_paragraphs
from climb_dagster.demo.corpus.unit import Unit


def license_units(common_licenses: Path, doc_root: Path, domain: str) -> Iterator[Unit]:
    """Units of every licence file then every `<doc_root>/<package>/copyright`, in sorted order.

    Copyright files repeat the same licence texts hundreds of times; a paragraph already seen (after
    cleaning) is dropped, so each licence text appears once, in the first file that has it.
    """
    files = [(f"base-files:{p}", p.name, p) for p in sorted(common_licenses.iterdir()) if not p.is_symlink()]
    files += [
        (f"{p.parent.name}:copyright", f"copyright of {p.parent.name}", p)
        for p in sorted(doc_root.glob("*/copyright"))
        if p.is_file()
    ]
    seen: set[str] = set()
    for source, title, path in files:
        kept = []
        for paragraph in split_paragraphs(path.read_text(encoding="utf-8", errors="replace")):
            key = " ".join(paragraph.split()).lower()
            if key not in seen:
                seen.add(key)
                kept.append(paragraph)
        if kept:
            yield Unit(domain, source, title, kept)
