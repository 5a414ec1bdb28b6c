"""lm-evaluation-harness as a target component: a tiny local task (YAML + JSONL), offline, on a tiny proxy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster_tests.unit import proxy_corpus as pc
from climb_dagster_tests.unit.targets.task_files import TASK_YAML, task_folder

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from climb_dagster.core.proxy.config import ProxyConfig
    from climb_dagster.core.proxy.train import train_proxy
    from climb_dagster.core.targets.evaluators import build_multiple_choice

    tmp = tmp_path_factory.mktemp("lm_eval")
    tasks = tmp / "tasks"
    (tasks / "data").mkdir(parents=True)
    (tasks / "tiny_mc.yaml").write_text(TASK_YAML)
    mc = build_multiple_choice(
        pc.texts()[-200:],
        tasks / "data" / "tiny_mc.jsonl",
        n_items=24,
        n_choices=3,
        context_words=6,
        continuation_words=3,
        seed=3,
    )
    cfg = ProxyConfig.tiny(pc.TINY_VOCAB)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=60))
    store = pc.store()
    model = train_proxy(store, [0.4, 0.3, 0.3], cfg, seed=0, out_dir=tmp / "ckpt").model
    return {
        "tasks": tasks,
        "mc": mc,
        "model": model,
        "tokenizer": store.load_tokenizer(),
        "ckpt": tmp / "ckpt",
        "other_model": train_proxy(store, [0.1, 0.2, 0.7], cfg, seed=1).model,
    }


def test_lm_eval_accuracy_matches_our_multiple_choice_scorer(setup: dict) -> None:
    from climb_dagster.core.targets.evaluators import eval_multiple_choice, load_multiple_choice
    from climb_dagster.core.targets.lm_eval import run_lm_eval

    acc = run_lm_eval(setup["model"], setup["tokenizer"], setup["tasks"], ["tiny_mc"], "acc")
    ours = eval_multiple_choice(setup["model"], setup["tokenizer"], load_multiple_choice(setup["mc"]), "none")
    assert 0.0 <= acc <= 1.0
    # Both sum the continuation's log-probabilities and take the argmax (unnormalised): same answer.
    assert acc == pytest.approx(ours, abs=1 / 24 + 1e-9)


def test_lm_eval_component_is_weighted_with_the_loss(setup: dict, tmp_path: Path) -> None:
    """A combined target (held-out loss + lm-eval accuracy) through prepare_target and the evaluator, offline,
    on the saved Hugging Face checkpoint."""
    from climb_dagster.core.targets.prepare import target_evaluator
    from climb_dagster.core.targets.score import evaluate_components
    from climb_dagster.core.targets.spec import TargetSpec

    spec = _combined_target(setup, tmp_path, lm_eval_weight=2.0)
    kinds = [e["kind"] for e in spec["evaluators"]]
    assert kinds == ["loss", "lm_eval"] and spec["direction"] == "minimize"
    evaluate = target_evaluator(spec, setup["tokenizer"], 1)
    score = evaluate(setup["model"])
    values = evaluate_components(str(setup["ckpt"]), TargetSpec.from_dict(spec))
    loss, acc = values["loss:heldout_windows.npy"], values["lm_eval:tiny_mc:acc"]
    assert 0.0 <= acc <= 1.0 and score == pytest.approx(loss - 2.0 * acc, abs=1e-6)


def test_proxy_pack_runs_the_lm_eval_component_per_member(setup: dict, tmp_path: Path) -> None:
    """A pack (issue 10) scores an lm-eval component model by model: the same values as separate runs."""
    from climb_dagster.core.targets.score import evaluate_components, evaluate_pack_components
    from climb_dagster.core.targets.spec import TargetSpec

    spec = TargetSpec.from_dict(_combined_target(setup, tmp_path))
    models = [setup["model"], setup["other_model"]]
    packed = evaluate_pack_components(models, spec, setup["tokenizer"])
    separate = [evaluate_components(m, spec, setup["tokenizer"]) for m in models]
    name = "lm_eval:tiny_mc:acc"
    assert [v[name] for v in packed] == [v[name] for v in separate]
    for got, want in zip(packed, separate, strict=True):
        assert got["loss:heldout_windows.npy"] == pytest.approx(want["loss:heldout_windows.npy"], rel=1e-4)


def test_lm_eval_errors_name_the_task_and_metric(setup: dict) -> None:
    from climb_dagster.core.targets.config import TargetConfig
    from climb_dagster.core.targets.lm_eval import run_lm_eval

    with pytest.raises(ClimbInputError, match=r"tasks \['piqa'\] are not defined"):
        run_lm_eval(setup["model"], setup["tokenizer"], setup["tasks"], ["piqa"])
    with pytest.raises(ClimbInputError, match="reports no metric 'f1'; it has \\['acc'\\]"):
        run_lm_eval(setup["model"], setup["tokenizer"], setup["tasks"], ["tiny_mc"], "f1", limit=2)
    with pytest.raises(ClimbInputError, match="needs lm_eval_path"):
        TargetConfig(kind="lm_eval", lm_eval_tasks=("tiny_mc",))
    assert TargetConfig(kind="lm_eval", lm_eval_path="x", lm_eval_tasks=("t",)).direction == "maximize"
    ppl = TargetConfig(
        kind="lm_eval", lm_eval_path="x", lm_eval_tasks=("t",), lm_eval_metric="word_perplexity"
    )
    assert ppl.direction == "minimize"


def test_lm_eval_target_is_a_checked_folder_validated_before_writing(tmp_path: Path) -> None:
    """The lm-eval task folder is the one evaluation set that is a folder (issue 15 refuses folders for
    the others); a file, or a folder without the tasks' YAML, fails before anything is written."""
    import json

    from upath import UPath

    from climb_dagster.core.targets.config import TargetConfig
    from climb_dagster.core.targets.prepare import check_target, prepare_target

    tasks = task_folder(tmp_path)
    docs = tmp_path / "target.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in pc.texts()[-10:]))

    def config(path: Path) -> TargetConfig:
        return TargetConfig(
            kind="combined", documents_path=str(docs), lm_eval_path=str(path), lm_eval_tasks=("tiny_mc",)
        )

    check_target(config(tasks))
    with pytest.raises(ClimbInputError, match="lm-eval task folder .*tiny_mc.yaml is a file"):
        check_target(config(tasks / "tiny_mc.yaml"))
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "prepared"
    with pytest.raises(ClimbInputError, match="holds no task .yaml files"):
        prepare_target(config(empty), pc.tokenizer_dir(), 32, UPath(out))
    assert not out.exists(), "nothing is written before every input is valid"


def _combined_target(setup: dict, tmp_path: Path, **extra) -> dict:
    """A prepared `combined` target: held-out loss on the last 40 demo texts plus the tiny lm-eval task."""
    import json

    from upath import UPath

    from climb_dagster.core.targets.config import TargetConfig
    from climb_dagster.core.targets.prepare import prepare_target

    docs = tmp_path / "target.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in pc.texts()[-40:]))
    target = TargetConfig(
        kind="combined",
        documents_path=str(docs),
        lm_eval_path=str(setup["tasks"]),
        lm_eval_tasks=("tiny_mc",),
        max_eval_windows=8,
        **extra,
    )
    return prepare_target(target, pc.tokenizer_dir(), 32, UPath(tmp_path / "prepared"))


def _copy_tasks(setup: dict, dest: Path, yaml: str) -> Path:
    import shutil

    shutil.copytree(setup["tasks"], dest)
    (dest / "tiny_mc.yaml").write_text(yaml)
    return dest


def test_function_tags_run_only_with_the_opt_in(setup: dict, tmp_path: Path) -> None:
    """Without lm_eval_trust_remote_code the folder's Python is refused before lm-eval sees it; with it,
    lm-eval runs `process_docs` (here: identity, so the score is the plain task's)."""
    from climb_dagster.core.targets.lm_eval import run_lm_eval

    marker = tmp_path / "ran"
    tasks = _copy_tasks(setup, tmp_path / "tasks", TASK_YAML + "process_docs: !function utils.process_docs\n")
    (tasks / "utils.py").write_text(
        f"def process_docs(dataset):\n    open({str(marker)!r}, 'w').close()\n    return dataset\n"
    )
    with pytest.raises(ClimbInputError, match="YAML tag !function utils.process_docs"):
        run_lm_eval(setup["model"], setup["tokenizer"], tasks, ["tiny_mc"], limit=4)
    assert not marker.exists()
    plain = run_lm_eval(setup["model"], setup["tokenizer"], setup["tasks"], ["tiny_mc"], limit=4)
    trusted = run_lm_eval(setup["model"], setup["tokenizer"], tasks, ["tiny_mc"], limit=4, trust_code=True)
    assert marker.exists() and trusted == plain


def test_templates_render_in_a_sandbox(setup: dict, tmp_path: Path) -> None:
    """A template that builds '__class__' at render time passes the static check; the sandbox stops it."""
    from climb_dagster.core.targets.lm_eval import run_lm_eval

    sneaky = '{% set u = "_" %}{{ context[u ~ u ~ "class" ~ u ~ u] }}'
    tasks = _copy_tasks(setup, tmp_path / "tasks", TASK_YAML.replace('"{{context}}"', f"'{sneaky}'"))
    with pytest.raises(ClimbInputError, match="a template reached for Python internals"):
        run_lm_eval(setup["model"], setup["tokenizer"], tasks, ["tiny_mc"], limit=2)
