"""King James Bible (via the `bible` program) and the Dhammapada, one unit per chapter."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from climb_dagster.demo.corpus.clean import clean_text, split_paragraphs
from climb_dagster.demo.corpus.unit import MissingSourceError, Unit

_CHAPTER_HEADER = re.compile(r"^\S.* \d+$")
_VERSE_START = re.compile(r"^\s+\d+ ")
_DHAMMAPADA_CHAPTER = re.compile(r"^\d+\. [A-Z][^.]*$")


def parse_bible_output(text: str) -> list[tuple[str, list[str]]]:
    """(chapter, verses) from `bible` output: a `Book N` line between blank lines, then indented verses
    whose wrapped continuation lines start at column 0."""
    chapters: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        prev_blank = i == 0 or not lines[i - 1].strip()
        next_blank = i + 1 >= len(lines) or not lines[i + 1].strip()
        if prev_blank and next_blank and _CHAPTER_HEADER.match(line):
            chapters.append((line.strip(), []))
        elif line.strip() and chapters:
            verses = chapters[-1][1]
            if _VERSE_START.match(line) or not verses:
                verses.append(line.strip())
            else:
                verses[-1] += " " + line.strip()
    return [(name, [clean_text(v) for v in verses]) for name, verses in chapters if verses]


def kjv_units(domain: str, workdir: Path | None = None) -> Iterator[Unit]:
    """Units of the whole KJV, one per chapter; needs `bible` (bible-kjv) and its data (bible-kjv-text)."""
    if shutil.which("bible") is None:
        raise MissingSourceError("bible-kjv", "bible")
    if not Path("/usr/lib/bible.data").exists():
        raise MissingSourceError("bible-kjv-text", "/usr/lib/bible.data")
    out = subprocess.run(
        ["bible", "-m", "8192", "Gen1:1-Rev22:21"], capture_output=True, check=True, cwd=workdir
    ).stdout.decode("utf-8", errors="replace")
    for name, verses in parse_bible_output(out):
        yield Unit(domain, "bible-kjv-text:/usr/lib/bible.data", f"KJV {name}", verses)


def dhammapada_units(path: Path, domain: str, source: str) -> Iterator[Unit]:
    """Units of the English Dhammapada: the preface, then one per numbered chapter (`1. The Pairs`)."""
    title, paragraphs = "Dhammapada: introduction", []
    for paragraph in split_paragraphs(path.read_text(encoding="utf-8", errors="replace")):
        first = paragraph.split("\n")[0]
        if _DHAMMAPADA_CHAPTER.match(first):
            if paragraphs:
                yield Unit(domain, source, title, paragraphs)
            title, paragraphs = f"Dhammapada: {first}", []
            paragraph = paragraph[len(first) :].strip()
        if paragraph and not set(paragraph) <= set("-= \n"):
            paragraphs.append(paragraph)
    if paragraphs:
        yield Unit(domain, source, title, paragraphs)
