"""Determinism guard for targets: the JSON of target specs and their hashes (stored experiment records and the
proxy-run data key depend on them), directions, validation messages, and what `prepare_target` writes.

`pinned_targets.json` was written by `python -m climb_dagster_tests.unit.targets.test_pinned_targets` from the
code before evaluator kinds became a registry (issue 25); rewrite it only for a change meant to alter stored
records or cache keys, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from upath import UPath

from climb_dagster.core.experiment.config import ExperimentConfig
from climb_dagster.core.experiment.records import ExperimentRecord
from climb_dagster.core.targets.config import TargetConfig
from climb_dagster.core.targets.prepare import prepare_target
from climb_dagster.core.targets.spec import EvaluatorSpec, TargetSpec
from climb_dagster_tests.pinned import assert_pinned, refusal, write_pinned
from climb_dagster_tests.unit import proxy_corpus as pc

PINNED = Path(__file__).with_name("pinned_targets.json")
# Data files named inside the folder: a task folder is data the checker can see (issue 28).
TASK_YAML = "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/d.jsonl\n"
MC_LINE = {"context": "The table", "choices": [" holds rows", " sings"], "gold": 0}


def _specs() -> dict[str, TargetSpec]:
    lm_eval = EvaluatorSpec("lm_eval", "/t/tasks", weight=0.5, tasks=("a", "b"), metric="acc_norm", limit=7)
    ppl = EvaluatorSpec("lm_eval", "/t/tasks2", tasks=("a",), metric="word_perplexity")
    return {
        "loss": TargetSpec.loss("/t/heldout_windows.npy"),
        "multiple_choice": TargetSpec.multiple_choice("/t/mc.jsonl", normalize="token"),
        "lm_eval": TargetSpec((lm_eval,), "maximize", "lm_eval"),
        "combined": TargetSpec.combined(
            [
                EvaluatorSpec("loss", "/t/heldout_windows.npy", weight=2.0, batch_size=16),
                EvaluatorSpec("multiple_choice", "/t/mc.jsonl", normalize="none"),
                lm_eval,
                ppl,
            ],
            "minimize",
        ),
    }


def _spec_pins() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, spec in _specs().items():
        values = {e.name: 0.25 * (i + 1) for i, e in enumerate(spec.evaluators)}
        out[key] = {
            "to_dict": spec.to_dict(),
            "hash": spec.content_hash(),
            "names": [e.name for e in spec.evaluators],
            "natural": [str(e.natural_direction) for e in spec.evaluators],
            "signs": [spec.sign(e) for e in spec.evaluators],
            "combined": spec.combine(values),
            "round_trip": TargetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec,
        }
    return out


def _configs() -> dict[str, TargetConfig]:
    lm = {"lm_eval_path": "/t/tasks", "lm_eval_tasks": ("a",)}
    return {
        "documents_loss": TargetConfig(documents_path="/t/d.parquet"),
        "mc_accuracy": TargetConfig(kind="mc_accuracy", mc_path="/t/mc.jsonl"),
        "lm_eval": TargetConfig(kind="lm_eval", **lm),
        "lm_eval_ppl": TargetConfig(kind="lm_eval", lm_eval_metric="perplexity", **lm),
        "combined_mc": TargetConfig(kind="combined", documents_path="/t/d.parquet", mc_path="/t/mc.jsonl"),
        "combined_all": TargetConfig(
            kind="combined", documents_path="/t/d.parquet", mc_path="/t/mc.jsonl", lm_eval_weight=3.0, **lm
        ),
        "loss_with_mc": TargetConfig(documents_path="/t/d.parquet", mc_path="/t/mc.jsonl"),
    }


BAD_CONFIGS: dict[str, dict[str, Any]] = {
    "unknown_kind": {"kind": "bleu"},
    "loss_no_documents": {},
    "mc_no_path": {"kind": "mc_accuracy"},
    "combined_no_other": {"kind": "combined", "documents_path": "/t/d"},
    "combined_no_documents": {"kind": "combined", "mc_path": "/t/mc"},
    "lm_eval_no_tasks": {"kind": "lm_eval", "lm_eval_path": "/t/tasks"},
    "lm_eval_no_path": {"kind": "lm_eval", "lm_eval_tasks": ("a",)},
    "tasks_without_path": {"documents_path": "/t/d", "lm_eval_tasks": ("a",)},
    "windows": {"documents_path": "/t/d", "max_eval_windows": 0},
}
BAD_EVALUATORS: dict[str, dict[str, Any]] = {
    "kind": {"kind": "bleu", "path": "x"},
    "path": {"kind": "loss", "path": ""},
    "weight": {"kind": "loss", "path": "x", "weight": 0},
    "normalize": {"kind": "multiple_choice", "path": "x", "normalize": "bytes"},
    "batch": {"kind": "loss", "path": "x", "batch_size": 0},
    "tasks": {"kind": "lm_eval", "path": "x"},
    "limit": {"kind": "lm_eval", "path": "x", "tasks": ("a",), "limit": 0},
}


def _config_pins() -> dict[str, Any]:
    out: dict[str, Any] = {
        # As stored (to_dict: the code opt-in of issue 28 only when set, so these pins hold).
        key: {"direction": str(cfg.direction), "asdict": cfg.to_dict()} for key, cfg in _configs().items()
    }
    out["refused"] = {key: refusal(lambda kw=kw: TargetConfig(**kw)) for key, kw in BAD_CONFIGS.items()}
    out["refused_evaluators"] = {
        key: refusal(lambda kw=kw: EvaluatorSpec(**kw)) for key, kw in BAD_EVALUATORS.items()
    }
    return out


def _record_pins() -> dict[str, Any]:
    """A stored experiment record (JSON as written) reads back equal, with the same hash and data key."""
    spec = _specs()["combined"].to_dict() | {"fingerprint": "0123456789abcdef"}
    config = ExperimentConfig("pin", _configs()["combined_all"], rounds=(4, 2, 1), seed=3)
    stored = json.loads(json.dumps(ExperimentRecord(config, "store-abc", "/s/tokens", spec, "h").to_dict()))
    record = ExperimentRecord.from_dict(stored)
    return {"stored": stored, "data_key": record.data_key(), "config_hash": config.content_hash()}


def pinned_now() -> dict[str, Any]:
    return {"specs": _spec_pins(), "configs": _config_pins(), "record": _record_pins()}


def test_target_specs_and_records_are_pinned() -> None:
    assert_pinned(PINNED, pinned_now())


def test_prepared_files_and_fingerprint(tmp_path: Path) -> None:
    """prepare_target writes the windows, the MC set and the task folder, lists them as loss, multiple_choice
    and lm_eval evaluators in that order, and fingerprints their bytes in that order."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in pc.texts()[-20:]))
    mc = tmp_path / "mc.jsonl"
    mc.write_text(json.dumps(MC_LINE) + "\n")
    tasks = tmp_path / "tasks"
    (tasks / "data").mkdir(parents=True)
    (tasks / "tiny_mc.yaml").write_text(TASK_YAML)
    (tasks / "data" / "d.jsonl").write_text("{}\n")
    target = TargetConfig(
        kind="combined",
        documents_path=str(docs),
        mc_path=str(mc),
        lm_eval_path=str(tasks),
        lm_eval_tasks=("tiny_mc",),
        loss_weight=2.0,
        accuracy_weight=0.5,
        lm_eval_weight=3.0,
        lm_eval_limit=5,
        max_eval_windows=8,
    )
    out = tmp_path / "prepared"
    spec = prepare_target(target, pc.tokenizer_dir(), 32, UPath(out))
    digest = hashlib.sha256((out / "heldout_windows.npy").read_bytes())
    digest.update(mc.read_bytes())
    for f in ("data/d.jsonl", "tiny_mc.yaml"):
        digest.update(f.encode())
        digest.update((tasks / f).read_bytes())
    assert spec == {
        "name": "combined",
        "direction": "minimize",
        "evaluators": [
            {
                "kind": "loss",
                "path": str(out / "heldout_windows.npy"),
                "weight": 2.0,
                "normalize": "char",
                "batch_size": 32,
            },
            {
                "kind": "multiple_choice",
                "path": str(out / "multiple_choice.jsonl"),
                "weight": 0.5,
                "normalize": "char",
                "batch_size": 32,
            },
            {
                "kind": "lm_eval",
                "path": str(out / "lm_eval_tasks"),
                "weight": 3.0,
                "normalize": "char",
                "batch_size": 32,
                "tasks": ["tiny_mc"],
                "metric": "acc",
                "limit": 5,
            },
        ],
        "fingerprint": digest.hexdigest()[:16],
    }
    assert (out / "multiple_choice.jsonl").read_bytes() == mc.read_bytes()
    assert (out / "lm_eval_tasks" / "data" / "d.jsonl").is_file()
    assert sorted(p.name for p in out.iterdir()) == [
        "heldout_windows.npy",
        "lm_eval_tasks",
        "multiple_choice.jsonl",
    ]


if __name__ == "__main__":
    write_pinned(PINNED, pinned_now())
