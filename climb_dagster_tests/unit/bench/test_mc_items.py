"""bench/mc_items: dictionary-definition items from WordNet pages, none whose gloss training holds."""

from __future__ import annotations

import json

import pytest

from climb_dagster.bench.mc_items import build_definition_items, definitions
from climb_dagster.core.common.errors import ClimbInputError

PAGE = """wooly-haired
adj 1: covered with dense often matted or curly hairs; "woolly
lambs" [syn: {wooly}, {woolly}]

woosh
v 1: move with a sibilant sound; "He whooshed the doors open"
[syn: {woosh}, {whoosh}]

woozy
adj 1: having or causing a whirling sensation; liable to falling
2: as if intoxicated

wop
n 1: (ethnic slur) offensive term for a person of Italian descent

worse
adj 1: (comparative of `bad') inferior to another in quality
[syn: {worse}]

worsened
adj 1: made or become worse; impaired

worship
v 1: show devotion to a deity; "Many Hindus worship Shiva"
"""


def test_definitions_are_first_senses_without_examples_or_slurs():
    got = {d.headword: (d.pos, d.gloss) for d in definitions([PAGE])}
    assert got["wooly-haired"] == ("adj", "covered with dense often matted or curly hairs")
    assert got["woosh"] == ("v", "move with a sibilant sound")
    assert got["woozy"] == ("adj", "having or causing a whirling sensation; liable to falling")
    assert "wop" not in got
    # Text of other dictionaries (gcide's markup) gives no entries.
    assert definitions(['Orchestra \\Or"ches*tra\\, n. [L. orchestra]\n1. The space in a theater']) == []


def test_items_have_four_choices_of_one_part_of_speech_and_skip_glosses_seen_in_training(tmp_path):
    out = build_definition_items([PAGE], tmp_path / "mc.jsonl", n_items=10, seed=0)
    items = [json.loads(line) for line in out.read_text().splitlines()]
    adjectives = {d.gloss for d in definitions([PAGE]) if d.pos == "adj"}
    # Only the adjectives have 3 others of their part of speech.
    assert len(items) == 4
    for item in items:
        assert len(item["choices"]) == 4 and item["context"].endswith("\nadj 1:")
        assert {c.strip() for c in item["choices"]} <= adjectives
    # A gloss a training document holds (line breaks aside) is left out: then too few adjectives remain.
    training = ["worsened: made or become\nworse; impaired, said the page"]
    with pytest.raises(ClimbInputError, match="none with 3 others"):
        build_definition_items([PAGE], tmp_path / "mc2.jsonl", 10, 0, exclude=training)
