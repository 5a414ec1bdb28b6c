from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.config import ProxyConfig
from climb_dagster.core.proxy.model import build_model, torch_threads
from climb_dagster.core.proxy.tokens import load_tokenizer
from climb_dagster.core.proxy.train import train_proxy
from climb_dagster.core.targets.evaluators import (
    build_eval_windows,
    build_multiple_choice,
    eval_loss,
    eval_multiple_choice,
    load_eval_windows,
    load_multiple_choice,
    split_by_title,
)
from climb_dagster.core.targets.score import evaluate_components, evaluate_target
from climb_dagster.core.targets.spec import EvaluatorSpec, TargetSpec
from climb_dagster_tests.unit import proxy_corpus as pc


@functools.cache
def trained(tmp: str) -> str:
    r = train_proxy(
        pc.store(), [0.4, 0.3, 0.3], ProxyConfig.tiny(pc.TINY_VOCAB), seed=0, out_dir=Path(tmp) / "m"
    )
    return r.model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return trained(str(tmp_path_factory.mktemp("proxy")))


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("eval")
    texts = pc.texts()[-60:]
    windows = build_eval_windows(texts, pc.tokenizer_dir(), d / "heldout.npy", block_size=32, max_windows=40)
    mc = build_multiple_choice(texts, d / "mc.jsonl", n_items=20, n_choices=4, seed=0)
    return windows, mc


def docs_frame() -> pl.DataFrame:
    titles = [f"page {i // 3}" if i % 7 else None for i in range(60)]
    return pl.DataFrame({"id": [f"d{i}" for i in range(60)], "text": ["x"] * 60, "title": titles})


def test_split_by_title_keeps_pages_whole() -> None:
    df = docs_frame()
    train, held = split_by_title(df, heldout_fraction=0.25, seed=0)
    assert train.height + held.height == df.height
    assert held.height >= 0.25 * df.height and train.height > 0
    shared = set(train["title"].drop_nulls()) & set(held["title"].drop_nulls())
    assert not shared
    again_train, _ = split_by_title(df, heldout_fraction=0.25, seed=0)
    assert again_train["id"].to_list() == train["id"].to_list()
    other, _ = split_by_title(df, heldout_fraction=0.25, seed=1)
    assert other["id"].to_list() != train["id"].to_list()
    assert train["id"].to_list() == sorted(train["id"].to_list(), key=lambda s: int(s[1:]))


def test_split_by_title_errors() -> None:
    with pytest.raises(ClimbInputError, match="'title'"):
        split_by_title(pl.DataFrame({"id": ["a", "b"]}))
    with pytest.raises(ClimbInputError, match="heldout_fraction"):
        split_by_title(docs_frame(), heldout_fraction=1.0)
    with pytest.raises(ClimbInputError, match="share one"):
        split_by_title(pl.DataFrame({"title": ["t", "t", "t"]}))


def test_eval_windows_file(eval_files: tuple[Path, Path]) -> None:
    windows = load_eval_windows(eval_files[0])
    assert windows.shape == (40, 33) and windows.dtype == np.uint16
    meta = json.loads(eval_files[0].with_suffix(".json").read_text())
    assert meta["n_windows"] == 40 and meta["block_size"] == 32


def test_loss_of_fresh_and_trained_models(eval_files: tuple[Path, Path], model_dir: str) -> None:
    from climb_dagster.core.proxy.model import load_model

    windows = load_eval_windows(eval_files[0])
    with torch_threads(1):
        fresh = eval_loss(build_model(ProxyConfig.tiny(pc.TINY_VOCAB).model, 0), windows)
        trained_loss = eval_loss(load_model(model_dir), windows, batch_size=7)
    assert fresh == pytest.approx(math.log(pc.TINY_VOCAB), abs=0.2)
    assert math.isfinite(trained_loss) and trained_loss < fresh - 0.5


def test_multiple_choice_accuracy_in_unit_interval(eval_files: tuple[Path, Path], model_dir: str) -> None:
    from climb_dagster.core.proxy.model import load_model

    items = load_multiple_choice(eval_files[1])
    assert len(items) == 20 and all(len(i.choices) == 4 and i.choices[i.gold].startswith(" ") for i in items)
    model, tok = load_model(model_dir), load_tokenizer(model_dir)
    with torch_threads(1):
        accs = [eval_multiple_choice(model, tok, items, normalize=n) for n in ("none", "char", "token")]
        assert accs[1] == eval_multiple_choice(model, tok, items, normalize="char")
    assert all(0.0 <= a <= 1.0 for a in accs)


def test_multiple_choice_builder_is_seeded(tmp_path: Path) -> None:
    texts = pc.texts()[:50]
    a = build_multiple_choice(texts, tmp_path / "a.jsonl", n_items=10, seed=3).read_text()
    b = build_multiple_choice(texts, tmp_path / "b.jsonl", n_items=10, seed=3).read_text()
    c = build_multiple_choice(texts, tmp_path / "c.jsonl", n_items=10, seed=4).read_text()
    assert a == b != c
    golds = {json.loads(line)["gold"] for line in a.splitlines()}
    assert len(golds) > 1
    with pytest.raises(ClimbInputError, match="documents have"):
        build_multiple_choice(["too short"] * 10, tmp_path / "d.jsonl")


def test_target_scores_and_directions(eval_files: tuple[Path, Path], model_dir: str) -> None:
    windows, mc = eval_files
    loss_t = TargetSpec.loss(windows)
    mc_t = TargetSpec.multiple_choice(mc)
    assert loss_t.direction == "minimize" and mc_t.direction == "maximize"
    loss = evaluate_target(model_dir, loss_t)
    acc = evaluate_target(model_dir, mc_t)
    assert math.isfinite(loss) and 0.0 <= acc <= 1.0
    combined = TargetSpec.combined(
        [
            EvaluatorSpec("loss", str(windows), weight=1.0),
            EvaluatorSpec("multiple_choice", str(mc), weight=2.0),
        ],
        direction="minimize",
    )
    assert evaluate_target(model_dir, combined) == pytest.approx(loss - 2.0 * acc)
    values = evaluate_components(model_dir, combined)
    assert set(values) == {"loss:heldout.npy", "multiple_choice:mc.jsonl"}
    assert loss_t.is_better(1.0, 2.0) and mc_t.is_better(0.8, 0.5)
    assert TargetSpec.from_dict(json.loads(json.dumps(combined.to_dict()))) == combined
    assert combined.content_hash() != loss_t.content_hash()


def test_model_object_needs_tokenizer_for_multiple_choice(
    eval_files: tuple[Path, Path], model_dir: str
) -> None:
    from climb_dagster.core.proxy.model import load_model

    model = load_model(model_dir)
    with pytest.raises(ClimbInputError, match="tokenizer"):
        evaluate_target(model, TargetSpec.multiple_choice(eval_files[1]))
    acc = evaluate_target(
        model, TargetSpec.multiple_choice(eval_files[1]), tokenizer=load_tokenizer(model_dir)
    )
    assert 0.0 <= acc <= 1.0
    with pytest.raises(ClimbInputError, match="no model"):
        evaluate_target(None, TargetSpec.loss(eval_files[0]))


def test_missing_and_empty_eval_sets_name_the_path(tmp_path: Path, model_dir: str) -> None:
    missing = tmp_path / "nope.npy"
    with pytest.raises(ClimbInputError, match="nope.npy"):
        evaluate_target(model_dir, TargetSpec.loss(missing))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ClimbInputError, match="empty.jsonl"):
        evaluate_target(model_dir, TargetSpec.multiple_choice(empty))
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(ClimbInputError, match="empty: .*blank.jsonl"):
        load_multiple_choice(blank)
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros((0, 33), dtype=np.uint16))
    with pytest.raises(ClimbInputError, match="zero.npy"):
        load_eval_windows(zero)
    with pytest.raises(ClimbInputError, match="no held-out text"):
        build_eval_windows(["", "  "], pc.tokenizer_dir(), tmp_path / "w.npy", block_size=32)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"context": 1, "choices": ["a", "b"], "gold": 0}', "context"),
        ('{"context": "c", "choices": ["a"], "gold": 0}', "choices"),
        ('{"context": "c", "choices": ["a", "b"], "gold": 2}', "gold"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_multiple_choice_lines(tmp_path: Path, line: str, message: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(ClimbInputError, match=f"bad.jsonl:1: .*{message}"):
        load_multiple_choice(p)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: EvaluatorSpec("bleu", "x"), "bleu"),
        (lambda: EvaluatorSpec("loss", ""), "path"),
        (lambda: EvaluatorSpec("loss", "x", weight=-1.0), "-1.0"),
        (lambda: EvaluatorSpec("multiple_choice", "x", normalize="bytes"), "bytes"),
        (lambda: TargetSpec((), "minimize"), "non-empty"),
        (lambda: TargetSpec((EvaluatorSpec("loss", "x"),), "lower"), "lower"),
        (lambda: TargetSpec((EvaluatorSpec("loss", "x"), EvaluatorSpec("loss", "x")), "minimize"), "repeat"),
    ],
)
def test_target_spec_validation(factory, message: str) -> None:
    with pytest.raises(ClimbInputError, match=message):
        factory()


def test_choice_logprobs_match_an_unpadded_forward(model_dir: str) -> None:
    import torch

    from climb_dagster.core.proxy.model import load_model
    from climb_dagster.core.targets.evaluators import MultipleChoiceItem, choice_logprobs

    model, tok = load_model(model_dir), load_tokenizer(model_dir)
    item = MultipleChoiceItem(
        "This program is free software; you can", (" redistribute it", " no", " x y z w"), 0
    )
    got = choice_logprobs(model, tok, item, block_size=32)
    ctx = tok.encode(item.context)
    for choice, (lp, n) in zip(item.choices, got, strict=True):
        cont = tok.encode(choice)
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits[0], dim=-1)
        want = sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
        assert n == len(cont) and lp == pytest.approx(want, abs=1e-4)


def test_multiple_choice_distractors_from_other_texts(tmp_path: Path) -> None:
    target = pc.texts()[:20]
    other = ["zebra " * 30, "quantum " * 30, "harbour " * 30, "violin " * 30]
    items = load_multiple_choice(
        build_multiple_choice(target, tmp_path / "mc.jsonl", n_items=10, seed=0, distractor_texts=other)
    )
    for item in items:
        wrong = [c for i, c in enumerate(item.choices) if i != item.gold]
        assert all(len(set(c.split())) == 1 and c.split()[0] in {o.split()[0] for o in other} for c in wrong)
    with pytest.raises(ClimbInputError, match="distractor documents"):
        build_multiple_choice(target, tmp_path / "x.jsonl", distractor_texts=["a b"])
