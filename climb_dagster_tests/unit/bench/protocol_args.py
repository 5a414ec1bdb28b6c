"""The arguments a bench protocol test runs with: the quick protocol, a tiny embedding model, one worker."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from climb_dagster_tests.unit.embedding.test_encoder import make_tiny_model


def quick_args(bench: Any, tmp: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    model = tmp / "tiny-bert"
    if not model.exists():
        make_tiny_model(model)
    argv = ["--protocol", "quick", "--model-path", str(model), "--precision", "fp32", "--workers", "1"]
    return bench.resolve(parser.parse_args([*argv, "--workdir", str(tmp / "work"), *extra]))
