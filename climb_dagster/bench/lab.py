"""One lab of the end-to-end benchmark: a corpus sample whose targets' pages are held out by title, clustered
and tokenized once, the three targets' validation and test sets, the proxy and the larger transfer model, and
the reference mixtures. `build_lab(args, work, seed)` makes one; labs of different seeds differ in their sample,
their held-out pages and their clustering.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from climb_dagster.bench.cluster import DEMO_DATA, sample_demo
from climb_dagster.bench.mc_items import build_definition_items
from climb_dagster.bench.proxy_sizes import on_device, proxy_config, train_device, transfer_config
from climb_dagster.core.clustering.kmeans import KMeansConfig
from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.common.hashing import content_hash
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.store import write_token_store
from climb_dagster.core.proxy.tokens import load_tokenizer, train_tokenizer
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.targets import evaluators as ev
from climb_dagster.core.targets.evaluators import build_eval_windows
from climb_dagster.core.targets.spec import TargetSpec

LOSS, MC = "loss", "mc"
SPLITS = ("val", "test")


@dataclass(frozen=True)
class TargetDef:
    """A target of the protocol: `kind` loss (mean held-out loss over `domains`' pages) or mc (the definition
    task of bench/mc_items.py on the domain's held-out dictionary pages)."""

    name: str
    kind: str
    domains: tuple[str, ...]

    @property
    def metric(self) -> str:
        return "held-out loss (nats/token)" if self.kind == LOSS else "gold-definition bits per byte"


@dataclass(frozen=True)
class LabTarget:
    """A target's files in one lab: per split, one windows file per domain (loss) or one items file (mc)."""

    definition: TargetDef
    files: dict[str, tuple[str, ...]]

    @property
    def name(self) -> str:
        return self.definition.name


def add_lab_arguments(parser: argparse.ArgumentParser, targets: str) -> None:
    """The options of a lab (corpus, targets, clustering, models) and of the searches and retrains run in it;
    left unset (None), a bench's protocol fills them."""
    parser.add_argument("--data", default=str(DEMO_DATA), help="folder with drop-*.parquet")
    parser.add_argument("--labs", type=int, default=None, help="labs (sample, split and clustering seeds)")
    parser.add_argument("--seeds", type=int, default=None, help="search seeds per lab")
    parser.add_argument("--docs", type=int, default=None, help="documents sampled per lab")
    parser.add_argument("--targets", default=targets)
    parser.add_argument("--target-domain", default="postgres_docs")
    parser.add_argument("--blend-domains", default="literature,legal_licenses,religious")
    parser.add_argument("--mc-domain", default="lexicon", help="its WordNet pages make the definition task")
    parser.add_argument("--mc-items", type=int, default=None, help="items per split")
    parser.add_argument("--heldout-fraction", type=float, default=0.3, help="of each target domain, by title")
    parser.add_argument("--budget", type=int, default=None, help="proxies per search, equal for every arm")
    parser.add_argument("--ratios", default=None, help="climb's per-round budget split")
    parser.add_argument("--candidates", type=int, default=None, help="Dirichlet draws ranked per round")
    parser.add_argument("--final-seeds", type=int, default=None, help="fresh proxy-size retrains per final")
    parser.add_argument("--transfer-seeds", type=int, default=None, help="fresh transfer retrains per final")
    parser.add_argument("--transfer-width", type=int, default=2, help="x the proxy's d_model and d_ff")
    parser.add_argument("--transfer-depth", type=int, default=2, help="x the proxy's layers")
    parser.add_argument("--transfer-tokens", type=int, default=5, help="x the proxy's training tokens")
    parser.add_argument("--k", type=int, default=None, help="K_init (default: default_n_clusters(docs))")
    parser.add_argument(
        "--superclusters", type=int, default=None, help="fixed-count cut instead of the merge"
    )
    parser.add_argument("--max-superclusters", type=int, default=None, help="bound on the threshold merge")
    parser.add_argument("--proxy", choices=["default", "small", "tiny"], default=None)
    parser.add_argument("--steps", type=int, default=None, help="proxy training steps")
    parser.add_argument("--max-eval-windows", type=int, default=None, help="per target and split")
    parser.add_argument("--model-path", default=None, help="embedding model (default: the shipped MiniLM)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max-windows", type=int, default=None, help="embedding windows per document")
    parser.add_argument("--cache-dir", default=None, help="reuse embeddings of identical samples (.npy)")
    parser.add_argument("--seed", type=int, default=0, help="the first lab's seed; lab i uses seed + i")
    parser.add_argument("--workers", type=int, default=None, help="models trained at once (default: cores)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where proxies and transfer models train",
    )
    parser.add_argument("--workdir", default=None, help="labs and finished runs (resumable; default: temp)")


def target_defs(args: argparse.Namespace) -> tuple[TargetDef, ...]:
    """The targets `--targets` names: domain (`--target-domain`), blend (`--blend-domains`), mc (`--mc-domain`)."""
    known = {
        "domain": TargetDef("domain", LOSS, (args.target_domain,)),
        "blend": TargetDef("blend", LOSS, tuple(d for d in args.blend_domains.split(",") if d)),
        "mc": TargetDef("mc", MC, (args.mc_domain,)),
    }
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ClimbInputError(f"--targets {args.targets!r}: choose from {list(known)}")
    if "blend" in names and len(known["blend"].domains) < 3:
        raise ClimbInputError(f"--blend-domains needs at least 3 domains, got {args.blend_domains!r}")
    return tuple(known[n] for n in names)


@dataclass(frozen=True)
class Lab:
    """What every search of one lab shares. `references`: natural (token shares), uniform and, for the domain
    target, domain_only (super-clusters weighted by the target domain's training tokens)."""

    seed: int
    store: Any
    proxy: ProxyConfig
    transfer: ProxyConfig
    targets: tuple[LabTarget, ...]
    tokenizer_dir: Path
    n_superclusters: int
    docs: dict[str, int]
    references: dict[str, list[float]]
    fingerprint: str

    @property
    def prior(self) -> np.ndarray:
        p = np.asarray(self.store.n_tokens, dtype=np.float64)
        return p / p.sum()

    def config(self, size: str) -> ProxyConfig:
        return {"proxy": self.proxy, "transfer": self.transfer}[size]


def _held_out(docs: pl.DataFrame, split: Any) -> pl.DataFrame:
    frames = [*split.val.values(), *split.test.values()]
    titles = {t for f in frames for t in f[schema.TITLE].drop_nulls().to_list()}
    ids = {i for f in frames for i in f[schema.ID].to_list()}
    return docs.filter(~pl.col(schema.TITLE).is_in(list(titles)) & ~pl.col(schema.ID).is_in(list(ids)))


def lab_corpus(args: argparse.Namespace, seed: int) -> tuple[tuple[TargetDef, ...], Any, pl.DataFrame]:
    """The targets, their held-out split (from the whole demo corpus, so the evaluation sets do not shrink with
    --docs) and the sampled training documents with every held-out page removed."""
    from climb_dagster.core.targets.split import split_domains

    defs = target_defs(args)
    everything = sample_demo(Path(args.data), 0, 0)
    domains = [d for t in defs for d in t.domains]
    split = split_domains(everything, domains, args.heldout_fraction, seed=seed)
    return defs, split, _held_out(sample_demo(Path(args.data), args.docs, seed), split)


def merge_config(args: argparse.Namespace) -> Any:
    from climb_dagster.core.clustering.superclusters import MergeConfig

    if args.superclusters is None:
        return MergeConfig(max_superclusters=args.max_superclusters)
    return MergeConfig(n_superclusters=args.superclusters)


def build_lab(args: argparse.Namespace, work: Path, seed: int) -> tuple[Lab, Any]:
    """Sample -> targets' pages held out -> clustering -> token store, evaluation files, references. Returns
    the lab and the split."""
    from climb_dagster.bench.cluster import _embed
    from climb_dagster.core.clustering.stage import cluster_documents
    from climb_dagster.core.quality.pruning import PruneConfig

    work.mkdir(parents=True, exist_ok=True)
    defs, split, train = lab_corpus(args, seed)
    emb, _, _, _ = _embed(train, args)
    merge = merge_config(args)
    stage = cluster_documents(train, emb, KMeansConfig(n_clusters=args.k, seed=seed), PruneConfig(), merge)
    kept = train.filter(pl.Series(stage.kept)).with_columns(
        pl.Series(schema.SUPER_CLUSTER, stage.super_cluster[stage.kept])
    )
    device = train_device(args.device)
    proxy = on_device(proxy_config(args.proxy, args.steps), device)
    transfer = transfer_config(proxy, args.transfer_width, args.transfer_depth, args.transfer_tokens)
    tok_dir = train_tokenizer(kept[schema.TEXT].to_list(), work / "tokenizer", proxy.model.vocab_size, seed)
    batches = (
        (int(sc), group[schema.TEXT].to_list())
        for (sc,), group in kept.sort(schema.ID).group_by(schema.SUPER_CLUSTER, maintain_order=True)
    )
    store = write_token_store(batches, tok_dir, work / "store", n_clusters=stage.n_superclusters)
    targets = lab_targets(args, defs, split, work, tok_dir, proxy, seed, train[schema.TEXT].to_list())
    lab = Lab(
        seed=seed,
        store=store,
        proxy=proxy,
        transfer=transfer,
        targets=targets,
        tokenizer_dir=Path(tok_dir),
        n_superclusters=stage.n_superclusters,
        docs={
            "sampled": args.docs,
            "train": train.height,
            "kept": kept.height,
            **{f"heldout_{d}": split.val[d].height + split.test[d].height for d in split.val},
        },
        references=_references(kept, stage.n_superclusters, store, defs),
        fingerprint=lab_fingerprint(args, seed, device),
    )
    return lab, split


def lab_fingerprint(args: argparse.Namespace, seed: int, device: str, **extra: Any) -> str:
    """What keys a lab's runs: the arguments that change what it holds, its seed, device and run code."""
    return content_hash(
        {
            "args": {k: v for k, v in sorted(vars(args).items()) if k in LAB_ARGS},
            "seed": seed,
            "device": device,
            "code": run_code_hash(),
            **extra,
        }
    )


def lab_targets(
    args: argparse.Namespace,
    defs: tuple[TargetDef, ...],
    split: Any,
    work: Path,
    tok_dir: Any,
    proxy: ProxyConfig,
    seed: int,
    train_texts: list[str],
) -> tuple[LabTarget, ...]:
    """Each target's validation and test files: token windows of its held-out pages, or the definition items
    (none whose gloss occurs in `train_texts`)."""
    targets = []
    for t in defs:
        files: dict[str, tuple[str, ...]] = {}
        for name, frames in (("val", split.val), ("test", split.test)):
            if t.kind == MC:
                path = work / f"{t.name}_{name}.jsonl"
                texts = frames[t.domains[0]][schema.TEXT].to_list()
                build_definition_items(
                    texts, path, args.mc_items, seed + (0 if name == "val" else 1), exclude=train_texts
                )
                files[name] = (str(path),)
                continue
            paths = []
            per_domain = max(4, args.max_eval_windows // len(t.domains))
            for d in t.domains:
                path = work / f"{t.name}_{d}_{name}.npy"
                build_eval_windows(
                    frames[d][schema.TEXT].to_list(), tok_dir, path, proxy.model.block_size, per_domain
                )
                paths.append(str(path))
            files[name] = tuple(paths)
        targets.append(LabTarget(t, files))
    return tuple(targets)


# The arguments that change what a lab holds (its runs' cache keys include them).
LAB_ARGS = (
    "data",
    "docs",
    "targets",
    "target_domain",
    "blend_domains",
    "mc_domain",
    "heldout_fraction",
    "k",
    "superclusters",
    "max_superclusters",
    "proxy",
    "steps",
    "max_eval_windows",
    "mc_items",
    "model_path",
    "precision",
    "max_windows",
    "transfer_width",
    "transfer_depth",
    "transfer_tokens",
)


# What decides a run's scores given its mixture, seed and model size: the lab's build and the training and
# evaluation code. The search and report code is left out, so a fixed report or search never retrains a run; the
# reuse bench's own lab code (REUSE_RUN_CODE) keys only its labs, so editing it never retrains an e2e run.
RUN_CODE = (
    "core/common",
    "core/io",
    "core/embedding",
    "core/quality",
    "core/clustering",
    "core/proxy",
    "core/targets",
    "bench/lab.py",
    "bench/proxy_sizes.py",
    "bench/mc_items.py",
    "bench/cluster.py",
    "bench/demo_sample.py",
    "bench/proxy_pool.py",
)


REUSE_RUN_CODE = ("bench/reuse_lab.py",)


def run_code_hash(parts: tuple[str, ...] = RUN_CODE) -> str:
    import hashlib

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for part in parts:
        path = root / part
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def _references(
    kept: pl.DataFrame, k: int, store: Any, defs: tuple[TargetDef, ...]
) -> dict[str, list[float]]:
    natural = np.asarray(store.n_tokens, dtype=np.float64)
    natural = natural / natural.sum()
    trainable = natural > 0
    refs = {
        "natural": natural.tolist(),
        "uniform": (trainable / trainable.sum()).tolist(),
    }
    domain = next((t.domains[0] for t in defs if t.name == "domain"), None)
    if domain is not None:
        own = kept.filter(pl.col(schema.DOMAIN) == domain)
        weights = np.zeros(k)
        sizes = own.group_by(schema.SUPER_CLUSTER).agg(pl.col(schema.TEXT).str.len_bytes().sum().alias("b"))
        for sc, b in sizes.iter_rows():
            weights[int(sc)] = float(b)
        weights *= trainable
        if weights.sum() > 0:
            refs["domain_only"] = (weights / weights.sum()).tolist()
    return refs


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(path: Path) -> Any:
    key = str(path)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(path)
    return _TOKENIZERS[key]


def score_target(model: Any, lab: Lab, target: LabTarget, split: str) -> dict[str, float]:
    """`{target:split: score}` (and `target:split:acc` for mc) of a trained model."""
    from climb_dagster.core.targets.score import evaluate_target

    key = f"{target.name}:{split}"
    threads = lab.proxy.train.num_threads
    if target.definition.kind == LOSS:
        losses = [
            evaluate_target(model, TargetSpec.loss(p), num_threads=threads) for p in target.files[split]
        ]
        return {key: float(np.mean(losses))}
    import torch

    items = ev.load_multiple_choice(target.files[split][0])
    with torch.no_grad():
        logprobs = ev.all_choice_logprobs(model, _tokenizer(lab.tokenizer_dir), items)
    return {
        key: ev.gold_bits_per_byte(items, logprobs),
        f"{key}:acc": ev.choice_accuracy(items, logprobs, "char"),
    }


def proxy_scores(
    lab: Lab, mixture: np.ndarray, seed: int, size: str, splits: tuple[str, ...]
) -> dict[str, float]:
    """Train one `size` model (proxy or transfer) on `mixture` and score it on every target's `splits`; NaN
    scores when the run diverged. `train_s`: its training seconds."""
    result = train_proxy(lab.store, mixture, lab.config(size), seed)
    out: dict[str, float] = {"train_s": float(result.wall_s)}
    for target in lab.targets:
        for split in splits:
            if not result.ok:
                out[f"{target.name}:{split}"] = float("nan")
                continue
            out.update(score_target(result.model, lab, target, split))
    return out
