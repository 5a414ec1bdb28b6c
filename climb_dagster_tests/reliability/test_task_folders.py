"""Issue 28, items 1-3: an lm-eval task folder is data, refused when the experiment is recorded (not in round 1,
after the proxies trained) when it holds code, an include or data file outside it, the storage itself, more
than its copy cap, or does not define a named task. The experiment step writes nothing then, and runs nothing
of the folder; with the opt-in the code is accepted and copied; otherwise the copy holds only what was checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from climb_dagster_tests.reliability.helpers import failure_text, files_under, materialize_in
from climb_dagster_tests.unit.targets.task_files import TASK_YAML as TASK
from climb_dagster_tests.unit.targets.task_files import task_folder as folder


def _spec(corpus: dict, path: Path | str, tasks=("tiny_mc",), **extra) -> dict:
    target = {"lm_eval_path": str(path), "lm_eval_tasks": list(tasks), **extra}
    return {**corpus["spec"], "target": {"lm_eval": target}}


def _refused(corpus: dict, name: str, spec: dict, *needles: str) -> str:
    before = files_under(corpus["root"])
    result = materialize_in(corpus, ["experiment"], name, spec)
    assert not result.success
    text = failure_text(result)
    assert "ClimbInputError" in text
    for needle in needles:
        assert needle in text, text
    assert files_under(corpus["root"]) == before, "a refused experiment writes nothing"
    return text


def _marker_utils(root: Path, marker: Path) -> None:
    (root / "utils.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef process_docs(dataset):\n    return dataset\n"
    )


def test_function_tag_is_refused_with_file_and_line_and_never_run(tiny_corpus: dict, tmp_path: Path):
    marker = tmp_path / "ran"
    root = folder(tmp_path, TASK + "process_docs: !function utils.process_docs\n")
    _marker_utils(root, marker)
    text = _refused(
        tiny_corpus,
        "lm-function",
        _spec(tiny_corpus, root),
        "tiny_mc.yaml:15: YAML tag !function utils.process_docs",
        "utils.py: Python file",
        "lm_eval_trust_remote_code: true",
    )
    assert str(root) in text
    assert not marker.exists()


@pytest.mark.parametrize(
    ("case", "extra", "files", "needle"),
    [
        ("py-file", "", {"helpers.py": "import os\n"}, "helpers.py: Python file"),
        ("include-out", "include: ../shared.yaml\n", {}, "tiny_mc.yaml:15: include '../shared.yaml' leaves"),
        (
            "data-out",
            "dataset_kwargs:\n  data_files: {test: ../valid.jsonl}\n",
            {},
            "tiny_mc.yaml:16: data file '../valid.jsonl' lies outside the task folder",
        ),
    ],
)
def test_code_includes_and_data_outside_the_folder_are_refused(
    tiny_corpus: dict, tmp_path: Path, case: str, extra: str, files: dict, needle: str
):
    (tmp_path / "shared.yaml").write_text("output_type: multiple_choice\n")
    (tmp_path / "valid.jsonl").write_text('{"context": "a", "choices": ["b", "c"], "gold": 0}\n')
    root = folder(tmp_path, TASK + extra, **files)
    _refused(tiny_corpus, f"lm-{case}", _spec(tiny_corpus, root), needle)


def test_undefined_task_is_refused_before_any_proxy_trains(tiny_corpus: dict, tmp_path: Path):
    root = folder(tmp_path)
    _refused(
        tiny_corpus,
        "lm-undefined",
        _spec(tiny_corpus, root, tasks=("tiny_mc", "piqa")),
        "lm-eval tasks ['piqa'] are not defined in the folder; it defines ['tiny_mc']",
    )


def test_folder_holding_the_storage_is_refused_before_anything_is_copied(tiny_corpus: dict):
    """The issue's 30 GB self-copy: lm_eval_path at the temp folder the storage lives in."""
    home = tiny_corpus["home"]
    _refused(
        tiny_corpus,
        "lm-storage",
        _spec(tiny_corpus, home),
        f"lm-eval task folder {home} holds the storage root ({tiny_corpus['root']})",
    )
    assert not [p for p in Path(tiny_corpus["root"]).rglob("*.tmp-*")], "no temporary left"


def test_folder_over_its_copy_cap_is_refused_naming_folder_and_cap(
    tiny_corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = folder(tmp_path, **{f"data__extra_{i}.jsonl": "{}\n" for i in range(4)})
    monkeypatch.setenv("CLIMB_COPY_CAPS", "lm_eval_tasks=1:5")
    _refused(
        tiny_corpus,
        "lm-cap",
        _spec(tiny_corpus, root),
        f"lm-eval task folder {root} holds more than the cap of a lm_eval_tasks copy (1 GiB, 5 files)",
        "CLIMB_COPY_CAPS=lm_eval_tasks=<GiB>:<files>",
    )


def test_the_copy_holds_only_checked_files_and_the_opt_in_copies_code(tiny_corpus: dict, tmp_path: Path):
    marker = tmp_path / "ran"
    root = folder(tmp_path / "plain", **{"README.md": "notes\n", "data__notes.txt": "unused\n"})
    assert materialize_in(tiny_corpus, ["experiment"], "lm-plain", _spec(tiny_corpus, root)).success
    copy = Path(tiny_corpus["root"]) / "targets" / "lm-plain" / "lm_eval_tasks"
    assert files_under(copy) == ["data/tiny_mc.jsonl", "tiny_mc.yaml"]

    code = folder(tmp_path / "code", TASK + "process_docs: !function utils.process_docs\n")
    _marker_utils(code, marker)
    spec = _spec(tiny_corpus, code, lm_eval_trust_remote_code=True)
    assert materialize_in(tiny_corpus, ["experiment"], "lm-trusted", spec).success
    copy = Path(tiny_corpus["root"]) / "targets" / "lm-trusted" / "lm_eval_tasks"
    assert files_under(copy) == ["data/tiny_mc.jsonl", "tiny_mc.yaml", "utils.py"]
    assert not marker.exists(), "recording the experiment runs nothing of the folder"
