"""Synthetic crawl drops of real-looking text for `bench scale`, recombined from the demo corpus.

Each synthetic document starts from a random demo document and keeps its domain: paragraphs of that document,
then paragraphs of other documents of the same domain, until it reaches a length drawn from the demo corpus's
own length distribution. So the texts read like the corpus (real sentences, topical), the clustering finds
topics, and the token counts per document are realistic. Ids are unique across all drops (`syn-<drop>-<row>`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from climb_dagster.bench.demo_sample import DEMO_DATA
from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError


@dataclass(frozen=True)
class _Source:
    paragraphs: list[str]
    doc_paragraphs: list[np.ndarray]  # paragraph ids of each demo document
    doc_domain: np.ndarray  # domain id of each demo document
    domain_docs: list[np.ndarray]  # demo documents of each domain
    domains: list[str]
    lengths: np.ndarray  # characters of each demo document
    titles: list[str]


def _source(data: Path) -> _Source:
    files = sorted(Path(data).glob("drop-*.parquet"))
    if not files:
        raise ClimbInputError(f"{data}: no drop-*.parquet files to recombine")
    docs = pl.concat([pl.read_parquet(f, columns=[schema.TEXT, schema.TITLE, schema.DOMAIN]) for f in files])
    domains = sorted(docs[schema.DOMAIN].unique().to_list())
    domain_id = {d: i for i, d in enumerate(domains)}
    paragraphs: list[str] = []
    doc_paragraphs: list[np.ndarray] = []
    for text in docs[schema.TEXT].to_list():
        parts = [p for p in text.split("\n") if p.strip()] or [text]
        start = len(paragraphs)
        paragraphs.extend(parts)
        doc_paragraphs.append(np.arange(start, len(paragraphs)))
    doc_domain = np.asarray([domain_id[d] for d in docs[schema.DOMAIN].to_list()])
    return _Source(
        paragraphs,
        doc_paragraphs,
        doc_domain,
        [np.flatnonzero(doc_domain == i) for i in range(len(domains))],
        domains,
        docs[schema.TEXT].str.len_chars().to_numpy(),
        docs[schema.TITLE].fill_null("").to_list(),
    )


def synthetic_frame(src: _Source, drop: str, n: int, rng: np.random.Generator) -> pl.DataFrame:
    """`n` recombined documents: id, text, title, domain."""
    seeds = rng.integers(0, len(src.doc_paragraphs), n)
    targets = src.lengths[rng.integers(0, src.lengths.size, n)]
    texts, titles, domains = [], [], []
    for i in range(n):
        seed = int(seeds[i])
        domain = int(src.doc_domain[seed])
        pool = src.domain_docs[domain]
        parts: list[str] = []
        size = 0
        doc = seed
        while size < targets[i]:
            for p in src.doc_paragraphs[doc]:
                text = src.paragraphs[int(p)]
                parts.append(text)
                size += len(text) + 1
                if size >= targets[i]:
                    break
            doc = int(pool[rng.integers(0, pool.size)])
        texts.append("\n".join(parts))
        titles.append(f"{src.titles[seed]} ({i % 97})")
        domains.append(src.domains[domain])
    return pl.DataFrame(
        {
            schema.ID: [f"syn-{drop}-{i:07d}" for i in range(n)],
            schema.TEXT: texts,
            schema.TITLE: titles,
            schema.DOMAIN: domains,
        }
    )


def write_synthetic_drops(
    out: Path, n_docs: int, drop_size: int, seed: int = 0, data: Path = DEMO_DATA
) -> dict[str, int]:
    """Write ceil(n_docs / drop_size) Parquet drops `drop-NNNN.parquet` into `out`; returns {drop: documents}."""
    if n_docs < 1 or drop_size < 1:
        raise ClimbInputError(f"n_docs and drop_size must be >= 1, got {n_docs} and {drop_size}")
    src = _source(data)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    n_drops = -(-n_docs // drop_size)
    for d in range(n_drops):
        key = f"drop-{d + 1:04d}"
        n = min(drop_size, n_docs - d * drop_size)
        frame = synthetic_frame(src, key, n, np.random.default_rng([seed, d]))
        tmp = out / f".{key}.parquet.tmp"
        frame.write_parquet(tmp, compression="zstd")
        os.replace(tmp, out / f"{key}.parquet")  # a drop appears whole
        written[key] = n
    return written


def heldout_target(out: Path, n_docs: int = 300, seed: int = 0, data: Path = DEMO_DATA) -> Path:
    """A small held-out target of recombined documents of one domain (ids outside every drop)."""
    src = _source(data)
    frame = synthetic_frame(src, "target", n_docs * 4, np.random.default_rng([seed, 999_983]))
    first = frame[schema.DOMAIN][0]
    frame = frame.filter(pl.col(schema.DOMAIN) == first).head(n_docs)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out)
    return out
