"""Text cleaning shared by every extractor: clean UTF-8, no control characters, tidy whitespace."""

from __future__ import annotations

import re
import unicodedata

# Overstrike (bold `X\bX`, underline `_\bX`) as left by troff and some fortune files.
_OVERSTRIKE = re.compile(r".\x08")
# C0/C1 controls except newline; tabs become spaces before this runs.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# Zero-width and replacement characters carry no text and confuse tokenizers.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028\u2029\u2060\ufeff\ufffd]")
_SPACES = re.compile(r"[ \u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise to NFC, drop control/invisible characters, collapse spaces inside lines and blank-line runs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _OVERSTRIKE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = _INVISIBLE.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def split_paragraphs(text: str) -> list[str]:
    """Clean `text` and split it on blank lines into non-empty paragraphs."""
    return [p for p in clean_text(text).split("\n\n") if p.strip()]


def word_count(text: str) -> int:
    """Whitespace-separated word count, the unit of every length bound in the corpus."""
    return len(text.split())
