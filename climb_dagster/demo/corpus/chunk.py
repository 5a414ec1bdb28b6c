"""Pack paragraphs into documents of bounded length, breaking only between paragraphs where possible."""

from __future__ import annotations

import re
from dataclasses import dataclass

from climb_dagster.demo.corpus.clean import word_count

_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


@dataclass(frozen=True)
class ChunkSpec:
    """Word-count bounds of a document: aim for `target`, never above `max_words`, drop below `min_words`."""

    target: int = 350
    min_words: int = 100
    max_words: int = 1000

    def __post_init__(self) -> None:
        if not 0 < self.min_words <= self.target <= self.max_words:
            raise ValueError(
                f"need 0 < min_words <= target <= max_words, got {self.min_words}, {self.target}, {self.max_words}"
            )


def _split_long(paragraph: str, max_words: int) -> list[str]:
    """Split a paragraph longer than `max_words`: at line breaks, then sentence ends, then hard word cuts."""
    if word_count(paragraph) <= max_words:
        return [paragraph]
    for pattern, joiner in (("\n", "\n"), (_SENTENCE_END, " ")):
        pieces = paragraph.split(pattern) if isinstance(pattern, str) else pattern.split(paragraph)
        if len(pieces) > 1:
            out: list[str] = []
            current: list[str] = []
            n = 0
            for piece in pieces:
                w = word_count(piece)
                if current and n + w > max_words:
                    out.append(joiner.join(current))
                    current, n = [], 0
                current.append(piece)
                n += w
            if current:
                out.append(joiner.join(current))
            return [q for part in out for q in _split_long(part, max_words)]
    words = paragraph.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


def chunk_paragraphs(paragraphs: list[str], spec: ChunkSpec = ChunkSpec()) -> list[str]:
    """Greedily pack paragraphs into chunks of about `spec.target` words, joined by blank lines.

    A chunk closes once adding the next paragraph would pass the target (if it already has `min_words`)
    or `max_words`. A short tail is merged into the chunk before it when that fits; chunks still under
    `min_words` are dropped.
    """
    pieces = [q for p in paragraphs if p.strip() for q in _split_long(p.strip(), spec.max_words)]
    chunks: list[list[str]] = []
    current: list[str] = []
    n = 0
    for piece in pieces:
        w = word_count(piece)
        over_target = n + w > spec.target and n >= spec.min_words
        if current and (over_target or n + w > spec.max_words):
            chunks.append(current)
            current, n = [], 0
        current.append(piece)
        n += w
    if current:
        if chunks and n < spec.min_words and word_count("\n\n".join(chunks[-1])) + n <= spec.max_words:
            chunks[-1].extend(current)
        else:
            chunks.append(current)
    texts = ["\n\n".join(c) for c in chunks]
    return [t for t in texts if word_count(t) >= spec.min_words]
