"""core/targets/split: validation and test splits of a target domain, disjoint by title, out of training."""

from __future__ import annotations

import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.targets.split import split_target


def _docs() -> pl.DataFrame:
    rows = []
    for page in range(20):
        for chunk in range(3):
            rows.append({"id": f"t{page}-{chunk}", "title": f"page {page}", "domain": "target", "text": "x"})
    # Another domain shares a title with the target: it must leave training too when that title is held.
    rows += [{"id": f"o{i}", "title": f"page {i}", "domain": "other", "text": "y"} for i in range(20)]
    return pl.DataFrame(rows)


def test_split_is_disjoint_by_title_and_out_of_training():
    split = split_target(_docs(), "target", heldout_fraction=0.4, test_share=0.5, seed=3)
    val, test = set(split.val["title"].to_list()), set(split.test["title"].to_list())
    assert val and test and not val & test
    assert split.held_titles() == val | test
    assert not set(split.train["title"].to_list()) & (val | test)
    # Whole pages: every chunk of a held-out page is on one side.
    assert split.val.height % 3 == 0 and split.test.height % 3 == 0
    assert split.train.height + split.val.height + split.test.height + len(val | test) == 80
    assert split_target(_docs(), "target", 0.4, 0.5, seed=3).test.equals(split.test)


def test_split_names_what_is_missing():
    with pytest.raises(ClimbInputError, match="no documents of domain 'nope'"):
        split_target(_docs(), "nope")
    with pytest.raises(ClimbInputError, match="no 'domain' column"):
        split_target(_docs().drop("domain"), "target")


def test_several_domains_are_held_out_at_once():
    from climb_dagster.core.targets.split import split_domains

    docs = pl.concat(
        [
            _docs(),
            pl.DataFrame(
                [{"id": f"b{p}-{c}", "title": f"book {p}", "domain": "b", "text": "z"} for p in range(10) for c in range(2)]
            ),
        ]
    )
    split = split_domains(docs, ["target", "b", "target"], heldout_fraction=0.4, seed=1)
    assert list(split.val) == ["target", "b"] and list(split.test) == ["target", "b"]
    held = split.held_titles()
    assert {t for t in held if t.startswith("book")} and {t for t in held if t.startswith("page")}
    assert not set(split.train["title"].to_list()) & held
    for domain in ("target", "b"):
        assert not set(split.val[domain]["title"].to_list()) & set(split.test[domain]["title"].to_list())
    with pytest.raises(ClimbInputError, match="at least one domain"):
        split_domains(docs, [])
