"""Real English text for the proxy tests, and one tiny tokenizer + token store shared by the session.

The licence texts of Debian's base-files (/usr/share/common-licenses) are on every dev and CI machine
and never change; the demo corpus is the fallback.
"""

from __future__ import annotations

import atexit
import functools
import glob
import os
import shutil
import tempfile
from pathlib import Path

from climb_dagster.core.proxy.store import TokenStore, write_token_store
from climb_dagster.core.proxy.tokens import train_tokenizer

LICENSES = "/usr/share/common-licenses"
DEMO = Path(__file__).resolve().parents[2] / "climb_dagster" / "demo" / "data"
TINY_VOCAB = 512


@functools.cache
def corpus() -> tuple[tuple[str, str], ...]:
    """(text, group) pairs: paragraphs of each licence file (group = file name)."""
    pairs: list[tuple[str, str]] = []
    for f in sorted(glob.glob(f"{LICENSES}/*")):
        if os.path.isfile(f) and not os.path.islink(f):
            with open(f, encoding="utf-8", errors="replace") as fh:
                pairs += [(p.strip(), Path(f).name) for p in fh.read().split("\n\n") if len(p.strip()) > 80]
    if len(pairs) < 200:
        import polars as pl

        files = sorted(p for p in DEMO.glob("drop-000*.parquet") if p.stat().st_size)
        assert files, f"no test corpus: neither {LICENSES} nor {DEMO}/drop-000*.parquet"
        df = pl.read_parquet(files[0]).head(2000)
        pairs = list(zip(df["text"].to_list(), df["domain"].to_list(), strict=True))
    return tuple(pairs)


def texts() -> list[str]:
    return [t for t, _ in corpus()]


def _tmpdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="climb-proxy-test-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def tokenizer_dir() -> Path:
    return train_tokenizer(texts(), _tmpdir() / "tok", vocab_size=TINY_VOCAB, seed=0, max_docs=600)


def cluster_batches(k: int = 3) -> list[tuple[int, list[str]]]:
    """Documents grouped into `k` super-clusters by their group (file), in batches of 32."""
    groups = sorted({g for _, g in corpus()})
    cid = {g: i % k for i, g in enumerate(groups)}
    by: dict[int, list[str]] = {c: [] for c in range(k)}
    for t, g in corpus():
        by[cid[g]].append(t)
    return [(c, ts[i : i + 32]) for c, ts in by.items() for i in range(0, len(ts), 32)]


@functools.cache
def store() -> TokenStore:
    """Three super-clusters of licence paragraphs, tokenized with the tiny tokenizer."""
    return write_token_store(cluster_batches(3), tokenizer_dir(), _tmpdir() / "store", n_clusters=3)
