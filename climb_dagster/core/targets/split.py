"""A target with a validation split (what a search sees) and a test split (what only the final report
sees), both held out of training. Splits go by title, so no page has chunks on two sides."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.targets.evaluators import split_by_title


@dataclass(frozen=True)
class TargetSplit:
    """train: every document a proxy may train on (no held-out title, in any domain); val and test: the
    target domain's held-out pages, disjoint by title."""

    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame

    def held_titles(self) -> set[str]:
        return set(self.val[schema.TITLE].drop_nulls().to_list()) | set(
            self.test[schema.TITLE].drop_nulls().to_list()
        )


def split_target(
    docs: pl.DataFrame, domain: str, heldout_fraction: float = 0.3, test_share: float = 0.5, seed: int = 0
) -> TargetSplit:
    """Hold out `heldout_fraction` of `domain`'s documents by title, and `test_share` of those (again by
    title) as the test split; drop every document whose title is held out from the training side."""

    for column in (schema.DOMAIN, schema.TITLE, schema.ID):
        if column not in docs.columns:
            raise ClimbInputError(f"documents have no {column!r} column (columns: {docs.columns})")
    target = docs.filter(pl.col(schema.DOMAIN) == domain).sort(schema.ID)
    if target.height == 0:
        raise ClimbInputError(f"no documents of domain {domain!r}")
    _, heldout = split_by_title(target, heldout_fraction=heldout_fraction, seed=seed)
    val, test = split_by_title(heldout, heldout_fraction=test_share, seed=seed + 1)
    titles = set(heldout[schema.TITLE].drop_nulls().to_list())
    ids = set(heldout[schema.ID].to_list())
    train = docs.filter(~pl.col(schema.TITLE).is_in(list(titles)) & ~pl.col(schema.ID).is_in(list(ids)))
    return TargetSplit(train, val, test)


@dataclass(frozen=True)
class DomainsSplit:
    """train: every document whose title is held out in no domain; val / test: per domain, its held-out
    pages, disjoint by title (`split_target` per domain, seeded per domain)."""

    train: pl.DataFrame
    val: dict[str, pl.DataFrame]
    test: dict[str, pl.DataFrame]

    def held_titles(self) -> set[str]:
        frames = [*self.val.values(), *self.test.values()]
        return {t for f in frames for t in f[schema.TITLE].drop_nulls().to_list()}


def split_domains(
    docs: pl.DataFrame,
    domains: list[str] | tuple[str, ...],
    heldout_fraction: float = 0.3,
    test_share: float = 0.5,
    seed: int = 0,
) -> DomainsSplit:
    """Hold out pages of several domains at once (each as `split_target` does, with seed `seed + 7 * i`
    for the i-th distinct domain) and drop every held-out title, of any domain, from the training side."""
    names = list(dict.fromkeys(domains))
    if not names:
        raise ClimbInputError("split_domains needs at least one domain")
    val: dict[str, pl.DataFrame] = {}
    test: dict[str, pl.DataFrame] = {}
    for i, domain in enumerate(names):
        one = split_target(docs, domain, heldout_fraction, test_share, seed=seed + 7 * i)
        val[domain], test[domain] = one.val, one.test
    held = [*val.values(), *test.values()]
    titles = {t for f in held for t in f[schema.TITLE].drop_nulls().to_list()}
    ids = {i for f in held for i in f[schema.ID].to_list()}
    train = docs.filter(~pl.col(schema.TITLE).is_in(list(titles)) & ~pl.col(schema.ID).is_in(list(ids)))
    return DomainsSplit(train, val, test)
