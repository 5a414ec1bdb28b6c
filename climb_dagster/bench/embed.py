"""Our embedder against `SentenceTransformer(path).encode` on the same texts, model and machine.

Ours runs with max_windows=1 by default (truncation, as the reference does), so the cosines compare
like with like; the pipeline's default of 2 windows reads more tokens at the same tokens/s.
The reference is sentence-transformers in fp16 on CUDA and fp32 on CPUs.
Both sides run in the same process, interleaved in rounds (ours, reference, reference, ours, ...) so
load from other processes hits both alike; throughput counts the same truncated tokens for both.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from climb_dagster.bench.demo_sample import DEMO_DATA, sample_table
from climb_dagster.core.common import schema
from climb_dagster.core.embedding.encoder import EmbedderConfig
from climb_dagster.core.embedding.sharded import load_embedder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docs", type=int, default=512, help="demo documents (seeded sample across drops; 0: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds", type=int, default=4, help="interleaved timing rounds (texts split evenly)"
    )
    parser.add_argument("--model-path", default=None, help="sentence-transformers folder (default: MiniLM)")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16|fp16|int8 for our side")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | cuda:all | cuda:0,cuda:1")
    parser.add_argument(
        "--token-budget", type=int, default=None, help="ours: tokens per pass (default: device)"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=None, help="ours: docs per pass (default: device)"
    )
    parser.add_argument(
        "--max-windows",
        type=int,
        default=1,
        help="ours: windows per document (1 = truncate, like the reference)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="reference encode() batch size")
    parser.add_argument("--data", default=None, help="folder of drop-*.parquet (default: the demo corpus)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer


    docs = sample_table(Path(args.data) if args.data else DEMO_DATA, args.docs, args.seed)
    texts = docs.column(schema.TEXT).to_pylist()
    ours = load_embedder(
        EmbedderConfig(
            model_path=args.model_path,
            precision=args.precision,
            device=args.device,
            max_windows=args.max_windows,
            token_budget=args.token_budget,
            max_batch_size=args.max_batch_size,
        )
    )
    # The reference runs on one device (the first of a multi-GPU setting): ours may use all of them.
    ref = SentenceTransformer(str(ours.spec.path), device=ours.device.split(",")[0])
    if ours.device.startswith("cuda"):
        ref.half()  # the reference on GPUs is sentence-transformers in fp16, its fastest common setting
    else:
        ref.float()  # and fp32 on CPUs, whatever dtype the checkpoint was saved in
    n_tokens = ours.count_tokens(texts)

    # Warm both (thread pools, oneDNN kernels) on a few texts outside the timed rounds.
    ours.embed(texts[:16])
    ref.encode(texts[:16], batch_size=args.batch_size)
    parts = np.array_split(np.arange(len(texts)), args.rounds)
    ours_s = ref_s = 0.0
    out = np.zeros((len(texts), ours.dimension), dtype=np.float32)
    expected = np.zeros_like(out)
    for r, idx in enumerate(parts):
        chunk = [texts[i] for i in idx]
        order = ("ours", "ref") if r % 2 == 0 else ("ref", "ours")
        for side in order:
            t0 = time.perf_counter()
            if side == "ours":
                out[idx] = ours.embed(chunk)
                ours_s += time.perf_counter() - t0
            else:
                expected[idx] = ref.encode(chunk, batch_size=args.batch_size, convert_to_numpy=True)
                ref_s += time.perf_counter() - t0
    cos = (out * expected).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(expected, axis=1) + 1e-12)
    tokens = int(n_tokens.sum())
    return {
        "docs": len(texts),
        "tokens": tokens,
        "model": str(ours.spec.path),
        "device": ours.device,
        "precision": ours.precision,
        "max_length": ours.max_length,
        "max_windows": args.max_windows,
        "token_budget": ours.token_budget,
        "max_batch_size": ours.max_batch_size,
        "reference_precision": "fp16" if ours.device.startswith("cuda") else "fp32",
        "pipeline_seconds": round(ours_s, 3),
        "reference_seconds": round(ref_s, 3),
        "pipeline_tokens_per_s": round(tokens / ours_s, 1),
        "reference_tokens_per_s": round(tokens / ref_s, 1),
        "ratio": round(ref_s / ours_s, 3),
        "mean_cosine": round(float(cos.mean()), 5),
        "min_cosine": round(float(cos.min()), 5),
        "torch_threads": __import__("torch").get_num_threads(),
    }
