"""Extract every source, chunk, deduplicate, cap per domain and write the two crawl-drop Parquet files."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from climb_dagster.core.common.schema import DOMAIN, ID, SOURCE, TEXT, TITLE
from climb_dagster.demo.corpus.chunk import ChunkSpec, chunk_paragraphs
from climb_dagster.demo.corpus.clean import word_count
from climb_dagster.demo.corpus.sources import SOURCES, Source, check_sources
from climb_dagster.demo.corpus.unit import DEFAULT_ROOTS

log = logging.getLogger(__name__)

COLUMNS = (ID, TEXT, SOURCE, TITLE, DOMAIN)
DROP_FILES = ("drop-0001.parquet", "drop-0002.parquet")


@dataclass(frozen=True)
class BuildConfig:
    """Corpus shape: chunk bounds, docs kept per domain and per unit, drop split and seed."""

    chunk: ChunkSpec = field(default_factory=ChunkSpec)
    docs_per_domain: int = 1700
    # A huge page (a changelog, a whole manual chapter) would otherwise fill its domain's quota.
    max_chunks_per_unit: int = 12
    first_drop_share: float = 0.6
    seed: int = 20250101
    zstd_level: int = 19

    def __post_init__(self) -> None:
        if self.docs_per_domain < 1 or self.max_chunks_per_unit < 1:
            raise ValueError(
                f"docs_per_domain and max_chunks_per_unit must be >= 1, got {self.docs_per_domain}, "
                f"{self.max_chunks_per_unit}"
            )
        if not 0.0 < self.first_drop_share < 1.0:
            raise ValueError(f"first_drop_share must be in (0, 1), got {self.first_drop_share}")


def doc_id(domain: str, text: str) -> str:
    """Stable id from content: `<domain>-<first 12 hex digits of sha1(text)>`."""
    return f"{domain}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def extract_documents(
    sources: Sequence[Source], found: dict[str, Path], config: BuildConfig
) -> list[dict[str, str]]:
    """Chunked documents of every source in registry order, exact duplicate texts dropped (first kept)."""
    docs: list[dict[str, str]] = []
    seen: set[str] = set()
    for source in sources:
        start = time.perf_counter()
        n_units = n_docs = n_dupes = 0
        for unit in source.extract(found[source.package], source.domain, source.package):
            n_units += 1
            for text in chunk_paragraphs(unit.paragraphs, config.chunk)[: config.max_chunks_per_unit]:
                if text in seen:
                    n_dupes += 1
                    continue
                seen.add(text)
                docs.append({TEXT: text, SOURCE: unit.source, TITLE: unit.title, DOMAIN: unit.domain})
                n_docs += 1
        log.info(
            "%-22s %-24s %6d units %6d docs %5d duplicates  %.1fs",
            source.domain, source.package, n_units, n_docs, n_dupes, time.perf_counter() - start,
        )  # fmt: skip
    return docs


def _units(docs: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """Documents grouped by (source, title), groups in order of first appearance."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for doc in docs:
        groups[(doc[SOURCE], doc[TITLE])].append(doc)
    return list(groups.values())


def sample_and_split(
    docs: list[dict[str, str]], config: BuildConfig
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Cap each domain at `docs_per_domain` by whole units in seeded random order, then split each domain's
    units between the drops (about `first_drop_share` of its documents in the first), so a unit never
    straddles drops and every drop holds every domain."""
    rng = np.random.default_rng(config.seed)
    by_domain: dict[str, list[dict[str, str]]] = defaultdict(list)
    for doc in docs:
        by_domain[doc[DOMAIN]].append(doc)
    drops: tuple[list[dict[str, str]], list[dict[str, str]]] = ([], [])
    for domain in sorted(by_domain):
        units = _units(by_domain[domain])
        kept: list[list[dict[str, str]]] = []
        n = 0
        for i in rng.permutation(len(units)):
            if n >= config.docs_per_domain:
                break
            unit = units[i][: config.docs_per_domain - n]
            kept.append(unit)
            n += len(unit)
        n_first = 0
        for unit in kept:
            target = drops[0] if n_first < config.first_drop_share * n else drops[1]
            target.extend(unit)
            n_first += len(unit) if target is drops[0] else 0
    # Crawl order is not domain order: shuffle rows so any prefix of a drop is a mixture.
    return tuple([d[i] for i in rng.permutation(len(d))] for d in drops)  # type: ignore[return-value]


def to_frame(docs: list[dict[str, str]]) -> pl.DataFrame:
    """Documents with their ids, in the corpus column order."""
    frame = pl.DataFrame(
        docs, schema={TEXT: pl.String, SOURCE: pl.String, TITLE: pl.String, DOMAIN: pl.String}
    )
    ids = [doc_id(d, t) for d, t in zip(frame[DOMAIN], frame[TEXT], strict=True)]
    return frame.with_columns(pl.Series(ID, ids, dtype=pl.String)).select(COLUMNS)


def build(
    out: Path, config: BuildConfig = BuildConfig(), roots: Sequence[Path] = DEFAULT_ROOTS
) -> dict[str, pl.DataFrame]:
    """Build the corpus into `out` (drops, NOTICE, README.md); return the drop frames by file name."""
    start = time.perf_counter()
    found = check_sources(SOURCES, roots)
    docs = extract_documents(SOURCES, found, config)
    first, second = sample_and_split(docs, config)
    frames = {DROP_FILES[0]: to_frame(first), DROP_FILES[1]: to_frame(second)}
    all_ids = pl.concat(list(frames.values()))[ID]
    if all_ids.n_unique() != len(all_ids):
        raise RuntimeError("document ids collide across drops; dedup should have prevented this")
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.write_parquet(
            out / name, compression="zstd", compression_level=config.zstd_level, statistics=False
        )
    (out / "NOTICE").write_text(notice_text(SOURCES), encoding="utf-8")
    (out / "README.md").write_text(readme_text(frames, out, config), encoding="utf-8")
    log.info("built %d documents in %.0fs", len(all_ids), time.perf_counter() - start)
    return frames


def notice_text(sources: Sequence[Source]) -> str:
    """NOTICE: each source package, its licence and the domain it feeds."""
    lines = [
        "The demo corpus is derived from the Debian 12 (bookworm) packages below: text extracted, cleaned",
        "and cut into chunks; see each package's /usr/share/doc/<package>/copyright for the full terms.",
        "",
        f"{'package':<24} {'domain':<24} licence",
    ]
    lines += [f"{s.package:<24} {s.domain:<24} {s.licence}" for s in sources]
    return "\n".join(lines) + "\n"


def readme_text(frames: dict[str, pl.DataFrame], out: Path, config: BuildConfig) -> str:
    """README.md: columns, documents per domain per drop, sizes and how to rebuild."""
    counts = {name: Counter(frame[DOMAIN].to_list()) for name, frame in frames.items()}
    domains = sorted(set().union(*counts.values()))
    all_frame = pl.concat(list(frames.values()))
    words = np.array([word_count(t) for t in all_frame[TEXT]])
    size_mb = sum((out / name).stat().st_size for name in frames) / 1e6
    header = "| domain | " + " | ".join(frames) + " | total |"
    rows = [
        f"| {d} | "
        + " | ".join(str(counts[n][d]) for n in frames)
        + f" | {sum(c[d] for c in counts.values())} |"
        for d in domains
    ]
    totals = "| **all** | " + " | ".join(str(len(f)) for f in frames.values()) + f" | {len(all_frame)} |"
    return f"""# Demo corpus

Real English text from {len(domains)} domains, extracted from Debian packages (see `NOTICE`), cut into
documents of {config.chunk.min_words}-{config.chunk.max_words} words (target {config.chunk.target}) on paragraph
boundaries, exact duplicates removed, at most {config.docs_per_domain} documents per domain. Two crawl drops
(zstd Parquet, {size_mb:.1f} MB together); a page/chapter never straddles the drops.

Columns: `id` (`<domain>-<sha1(text)[:12]>`), `text`, `source` (package:file), `title` (page, chapter or
entry group: split train/validation by it, not by chunk), `domain` (label only; the pipeline never reads it).
Words per document: median {int(np.median(words))}, min {words.min()}, max {words.max()}.

{header}
|---|{"---|" * (len(frames) + 1)}
{chr(10).join(rows)}
{totals}

Rebuild (Debian 12, root; about a minute of installs, then a few minutes):

```
apt-get update && apt-get install -y --no-install-recommends man-db bsdextrautils python3-doc manpages \\
  manpages-dev postgresql-doc-15 debian-reference-en debian-faq maint-guide debian-policy \\
  developers-reference bible-kjv bible-kjv-text sword-comm-mhcc display-dhammapada fortunes fortunes-min \\
  fortunes-bofh-excuses fortunes-debian-hints dict-devil dict-gcide dict-wn dict-foldoc dict-jargon \\
  octave-doc r-doc-html
mkdir -p /tmp/debs && cd /tmp/debs && apt-get download linux-doc-6.1 debian-handbook r-cran-janeaustenr \\
  && for f in *.deb; do dpkg-deb -x $f /var/cache/climb-demo/root; done
cd - && python -m climb_dagster.demo.corpus --out climb_dagster/demo/data
```

The `legal_licenses` domain reads every installed package's copyright file, so its sample depends on
what else is installed; the other domains depend only on the package versions.
"""
