"""The evaluator-kind registry: a kind defined here, in one class, scores real tiny proxies through
`evaluate_target` and the pack path once registered, combines with the built-in loss, and is gone once
unregistered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from climb_dagster.core.common.direction import Direction
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.targets.evaluators import build_eval_windows, load_eval_windows
from climb_dagster.core.targets.kinds import EvaluatorKind, register_kind, registered_kinds, unregister_kind
from climb_dagster.core.targets.score import (
    evaluate_components,
    evaluate_pack,
    evaluate_pack_components,
    evaluate_target,
)
from climb_dagster.core.targets.spec import EvaluatorSpec, TargetSpec
from climb_dagster_tests.unit import proxy_corpus as pc

TOY = "next_token_accuracy"


def _hits(logits: Any, windows: Any) -> float:
    return float((logits.argmax(dim=-1) == windows[..., 1:]).double().mean())


class NextTokenAccuracy(EvaluatorKind):
    """Share of window positions whose next token is the model's argmax (maximised)."""

    name = TOY
    target_kind = "next_token_accuracy"
    requirement = "(no TargetConfig field: specs only)"
    natural = Direction.MAXIMIZE

    def configured(self, target: Any) -> bool:
        return False

    def score(self, model: Any, spec: EvaluatorSpec, tokenizer: Any) -> float:
        import torch

        w = torch.from_numpy(load_eval_windows(spec.path).astype(np.int64))
        with torch.no_grad():
            return _hits(model(input_ids=w[:, :-1], use_cache=False).logits, w)

    def score_pack(self, pack: Any, models: list[Any], spec: EvaluatorSpec, tokenizer: Any) -> list[float]:
        import torch

        w = torch.from_numpy(load_eval_windows(spec.path).astype(np.int64))
        logits = pack.logits(w[:, :-1].unsqueeze(0).expand(len(models), -1, -1))
        return [_hits(logits[j], w) for j in range(len(models))]


@pytest.fixture
def toy():
    register_kind(NextTokenAccuracy)
    yield
    unregister_kind(TOY)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("toy-kind")
    windows = build_eval_windows(
        pc.texts()[-40:], pc.tokenizer_dir(), tmp / "w.npy", block_size=32, max_windows=12
    )
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    trained = [
        train_proxy(pc.store(), mix, cfg, seed=s).model
        for mix, s in (([0.5, 0.3, 0.2], 0), ([0.1, 0.2, 0.7], 1))
    ]
    return {"windows": windows, "models": trained}


def test_registered_kind_scores_one_model_and_a_pack(toy, models: dict[str, Any]) -> None:
    windows = str(models["windows"])
    spec = TargetSpec.combined(
        [EvaluatorSpec("loss", windows), EvaluatorSpec(TOY, windows, weight=2.0)], Direction.MINIMIZE
    )
    toy_spec = spec.evaluators[1]
    assert toy_spec.name == f"{TOY}:w.npy" and toy_spec.natural_direction == Direction.MAXIMIZE
    assert TargetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    alone = [evaluate_components(m, spec) for m in models["models"]]
    for values in alone:
        assert 0.0 <= values[toy_spec.name] <= 1.0
    # Minimised: the loss counts up, the accuracy (maximised by nature) counts down, with its weight.
    target = [evaluate_target(m, spec) for m in models["models"]]
    assert target == pytest.approx([v["loss:w.npy"] - 2.0 * v[toy_spec.name] for v in alone])
    packed = evaluate_pack_components(models["models"], spec)
    for p, a in zip(packed, alone, strict=True):
        assert p.keys() == a.keys()
        assert p[toy_spec.name] == pytest.approx(a[toy_spec.name], abs=1e-9)
        assert p["loss:w.npy"] == pytest.approx(a["loss:w.npy"], rel=1e-4)
    assert evaluate_pack(models["models"], spec) == pytest.approx(target, rel=1e-4)


def test_registered_kind_checks_its_file(toy, tmp_path: Path) -> None:
    spec = TargetSpec((EvaluatorSpec(TOY, str(tmp_path / "none.npy")),), Direction.MAXIMIZE)
    with pytest.raises(ClimbInputError, match=f"evaluation set for {TOY} not found"):
        spec.check_files()


def test_unregistered_kind_is_refused() -> None:
    assert TOY not in [k.name for k in registered_kinds()]
    with pytest.raises(ClimbInputError, match=f"EvaluatorSpec.kind must be one of .*got '{TOY}'"):
        EvaluatorSpec(TOY, "w.npy")
