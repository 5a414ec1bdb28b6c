"""A downstream multiple-choice task from real text no proxy trains on: WordNet definitions of held-out
dictionary pages. Each item gives a headword and its part of speech as a dictionary would ("woosh\\nv 1:")
and asks for the right definition among 4; the distractors are definitions of other headwords of the same
part of speech from the same split. Scored continuously (bits per byte of the gold definition, as small-proxy
studies recommend over accuracy) and by accuracy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.io.storage import atomic_write_text, make_path

# A WordNet entry as the dictd source prints it: the headword on its own line, then "n 1: gloss...".
ENTRY = re.compile(
    r"^([^\n]{1,60})\n(n|v|adj|adv) 1: (.+?)(?=\n\S[^\n]*\n(?:n|v|adj|adv) 1: |\n\s*\n|\Z)", re.S | re.M
)
MAX_DEFINITION_WORDS = 16
MIN_DEFINITION_WORDS = 3
# Entries WordNet marks as slurs or obscenities are left out of the task.
OFFENSIVE = re.compile(r"slur|offensive|obscen|vulgar|derogatory|disparaging", re.I)


@dataclass(frozen=True)
class Definition:
    headword: str
    pos: str
    gloss: str


def definitions(texts: Sequence[str]) -> list[Definition]:
    """First senses of every WordNet entry in `texts` (other text is ignored): the gloss up to its examples,
    synonyms or second sense, at most MAX_DEFINITION_WORDS words; one per headword."""
    seen: set[str] = set()
    out: list[Definition] = []
    for text in texts:
        for head, pos, body in ENTRY.findall(text):
            gloss = re.split(r';\s*"|\[syn:|\n\s*2:|\s2:\s', body)[0]
            words = gloss.replace("\n", " ").split()
            if len(words) < MIN_DEFINITION_WORDS or head in seen or OFFENSIVE.search(gloss):
                continue
            seen.add(head)
            out.append(Definition(head.strip(), pos, " ".join(words[:MAX_DEFINITION_WORDS]).rstrip(";")))
    return out


def build_definition_items(
    texts: Sequence[str],
    out_path: str | Path,
    n_items: int,
    seed: int,
    n_choices: int = 4,
    exclude: Sequence[str] = (),
) -> Path:
    """Write up to `n_items` items (JSONL: context, choices, gold) from the entries of `texts`, leaving out every
    definition whose gloss occurs in `exclude` (the training documents: WordNet repeats a gloss under each
    synonym, which another page may hold); refused when fewer than `n_choices` entries share a part of speech
    (the error names the file)."""
    seen = " ".join(" ".join(exclude).split())
    defs = [d for d in definitions(texts) if d.gloss not in seen]
    by_pos: dict[str, list[Definition]] = {}
    for d in defs:
        by_pos.setdefault(d.pos, []).append(d)
    usable = [d for d in defs if len(by_pos[d.pos]) >= n_choices]
    if not usable:
        raise ClimbInputError(
            f"{out_path}: {len(defs)} WordNet entries, none with {n_choices - 1} others of its part of speech"
        )
    rng = np.random.default_rng(seed)
    chosen = [usable[i] for i in rng.permutation(len(usable))[:n_items]]
    lines = []
    for d in chosen:
        others = [o for o in by_pos[d.pos] if o.headword != d.headword]
        picks = rng.choice(len(others), size=n_choices - 1, replace=False)
        gold = int(rng.integers(n_choices))
        wrong = [" " + others[int(j)].gloss for j in picks]
        choices = [*wrong[:gold], " " + d.gloss, *wrong[gold:]]
        lines.append(json.dumps({"context": f"{d.headword}\n{d.pos} 1:", "choices": choices, "gold": gold}))
    out = make_path(out_path)
    atomic_write_text(out, "\n".join(lines) + "\n")
    return Path(str(out))
