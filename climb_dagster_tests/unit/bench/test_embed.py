"""`python -m climb_dagster.bench embed` reports the figures issue 13 asks for, on a few demo documents."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from climb_dagster.bench import embed


@pytest.mark.slow
def test_embed_bench_reports_speed_agreement_and_chosen_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIMB_CACHE_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    embed.add_arguments(parser)
    report = embed.run(parser.parse_args(["--docs", "12", "--rounds", "2", "--device", "cpu"]))
    for key in ("pipeline_tokens_per_s", "reference_tokens_per_s", "ratio", "mean_cosine", "min_cosine"):
        assert report[key] > 0, key
    assert report["precision"] in ("bf16", "onnx-int8", "fp32")
    assert (report["token_budget"], report["max_batch_size"], report["reference_precision"]) == (
        8192,
        256,
        "fp32",
    )
    assert report["mean_cosine"] >= 0.98


def test_embed_bench_imports_nothing_a_bare_gpu_machine_lacks() -> None:
    """The GPU machines this bench is meant for have torch, transformers, sentence-transformers and pyarrow,
    but not polars, dagster, faiss, lightgbm or onnxruntime: bench embed, bench proxy's corpus, the embedder and
    the torch k-means assignment must not need them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('polars', 'dagster', 'faiss', 'lightgbm', 'mlflow', 'onnxruntime'): sys.modules[m] = None\n"
        "from climb_dagster.bench import embed\n"
        "import climb_dagster.bench.__main__  # the dispatcher and its --save (bench/results.py)\n"
        "from climb_dagster.bench.demo_sample import DEMO_DATA, sample_table\n"
        "from climb_dagster.core.embedding import encoder, sharded, sizing\n"
        "t = sample_table(DEMO_DATA, 5, 0)\n"
        "assert t.num_rows == 5 and 'drop' in t.column_names, t.column_names\n"
        "from climb_dagster.bench import proxy\n"
        "texts, groups, _ = proxy.load_texts(None)\n"
        "assert len(texts) == len(groups) > 1000\n"
        "import numpy as np\n"
        "from climb_dagster.core.clustering import kmeans\n"
        "assert kmeans.assign_backend('auto') == 'faiss'  # no GPU here; on a GPU machine: torch-cuda\n"
        "a = kmeans.assign_with_torch(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32), True, 'cpu', 2)\n"
        "assert a.cluster.tolist() == [0, 1, 2, 3]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_demo_sample_takes_every_document_at_zero_and_names_the_corpus_size(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from climb_dagster.bench.demo_sample import DEMO_DATA, sample_table
    from climb_dagster.core.common.errors import ClimbInputError

    total = sum(pq.read_metadata(f).num_rows for f in DEMO_DATA.glob("drop-*.parquet"))
    assert sample_table(DEMO_DATA, 0, 0).num_rows == total
    with pytest.raises(ClimbInputError, match=f"has {total} documents"):
        sample_table(DEMO_DATA, total + 1, 0)
    with pytest.raises(ClimbInputError, match="no drop-"):
        sample_table(tmp_path, 3, 0)
