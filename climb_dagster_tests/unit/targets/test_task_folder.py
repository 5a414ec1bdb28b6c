"""An lm-eval task folder is data (core/targets/task_folder.py): each way lm-eval 0.4 can run code from its YAML
is refused with the file and line, unless trusted; data and includes must stay inside the folder; a copy holds
only what was checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.targets.task_folder import check_task_folder, copy_task_folder
from climb_dagster_tests.unit.targets.task_files import TASK_YAML as TASK
from climb_dagster_tests.unit.targets.task_files import task_folder as folder


def refused(root: Path, *needles: str, tasks=("tiny_mc",), trust: bool = False) -> str:
    with pytest.raises(ClimbInputError) as info:
        check_task_folder(root, list(tasks), trust)
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    return text


def test_a_data_only_folder_is_accepted_and_its_copy_holds_only_checked_files(tmp_path: Path):
    root = folder(tmp_path, **{"README.md": "notes", "data__unused.jsonl": "{}"})
    checked = check_task_folder(root, ["tiny_mc"])
    assert checked.names == ("tiny_mc",)
    assert checked.files == ("data/tiny_mc.jsonl", "tiny_mc.yaml")
    copy = copy_task_folder(checked, tmp_path / "copy")
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == list(
        checked.files
    )


CODE = {
    "function-tag": ("process_docs: !function utils.process_docs\n", "tiny_mc.yaml:15: YAML tag !function"),
    "python-name-tag": ("x: !!python/name:os.system\n", "tag:yaml.org,2002:python/name:os.system"),
    "python-task": ("class: !function tasks.MyTask\n", "`class`: a task written in Python"),
    "class-key": ("class: MyTask\n", "tiny_mc.yaml:15: `class`"),
    "custom-dataset": ("custom_dataset: build\n", "`custom_dataset`"),
    "prompt-file": ("use_prompt: prompts.yaml:p1\n", "`use_prompt: prompts.yaml:p1`"),
    "hf-evaluate": (
        "metric_list:\n  - metric: bleu\n    hf_evaluate: true\n",
        "tiny_mc.yaml:17: `hf_evaluate`",
    ),
    "metric-path": (
        "metric_list:\n  - metric: /tmp/m/metric.py\n",
        "metric '/tmp/m/metric.py' is not a metric",
    ),
    "remote-code": (
        "dataset_kwargs:\n  data_files: data/tiny_mc.jsonl\n  trust_remote_code: true\n",
        "`trust_remote_code`",
    ),
    "jinja-dunder": (
        'doc_to_text: "{{ cycler.__init__.__globals__.os }}"\n',
        "reads the attribute '__init__'",
    ),
    "jinja-attr": ("doc_to_text: \"{{ context|attr('x') }}\"\n", "the `attr` filter"),
    "jinja-dunder-string": ("doc_to_text: \"{{ context['__class__'] }}\"\n", "reads the item '__class__'"),
}


@pytest.mark.parametrize("case", sorted(CODE))
def test_code_in_the_yaml_is_refused_with_file_and_line_unless_trusted(tmp_path: Path, case: str):
    extra, needle = CODE[case]
    root = folder(tmp_path, TASK + extra)
    text = refused(root, needle, "lm_eval_trust_remote_code: true")
    assert text.startswith(f"lm-eval task folder {str(root)!r} refused:")
    assert check_task_folder(root, ["tiny_mc"], trust_code=True).names == ("tiny_mc",)


def test_python_files_are_refused_and_copied_only_when_trusted(tmp_path: Path):
    root = folder(tmp_path, **{"utils.py": "import os\n", "sub__helpers.py": "x = 1\n"})
    refused(root, "utils.py: Python file", "sub/helpers.py: Python file")
    trusted = check_task_folder(root, ["tiny_mc"], trust_code=True)
    assert trusted.files == ("data/tiny_mc.jsonl", "sub/helpers.py", "tiny_mc.yaml", "utils.py")


def test_function_tag_is_never_executed_by_the_check(tmp_path: Path):
    marker = tmp_path / "ran"
    root = folder(tmp_path, TASK + "process_docs: !function utils.process_docs\n")
    (root / "utils.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef process_docs(d):\n    return d\n"
    )
    refused(root, "!function utils.process_docs")
    check_task_folder(root, ["tiny_mc"], trust_code=True)
    assert not marker.exists()


DATA = {
    "include-up": (
        "include: ../outside.yaml\n",
        "tiny_mc.yaml:15: include '../outside.yaml' leaves the task folder",
    ),
    "include-absolute": ("include: /etc/hostname\n", "include '/etc/hostname' leaves the task folder"),
    "include-missing": ("include: base.yaml\n", "include 'base.yaml' not found"),
    "data-up": (
        "dataset_kwargs:\n  data_files: {test: ../outside.jsonl}\n",
        "tiny_mc.yaml:16: data file '../outside.jsonl' lies outside",
    ),
    "data-absolute": (
        "dataset_kwargs:\n  data_files: /etc/hostname\n",
        "data file '/etc/hostname' is not a file inside",
    ),
    "data-url": (
        "dataset_kwargs:\n  data_files: https://example.org/x.jsonl\n",
        "is not a file inside the task folder",
    ),
    "data-glob-up": ("dataset_kwargs:\n  data_files: ../*.jsonl\n", "data file '../*.jsonl' lies outside"),
    "data-missing": (
        "dataset_kwargs:\n  data_files: data/nope.jsonl\n",
        "data file 'data/nope.jsonl' matches no file",
    ),
    "data-dir": (
        "dataset_kwargs:\n  data_files: data/tiny_mc.jsonl\n  data_dir: data\n",
        "data_dir: list the files",
    ),
    "hub-dataset": ("dataset_path: piqa\n", "dataset_path 'piqa' is not one of"),
    "pickle-builder": ("dataset_path: pandas\n", "dataset_path 'pandas' is not one of"),
    "no-data-files": ("dataset_kwargs: {}\n", "dataset_path 'json' needs dataset_kwargs.data_files"),
}


@pytest.mark.parametrize("case", sorted(DATA))
def test_data_and_includes_outside_the_folder_are_refused_even_when_trusted(tmp_path: Path, case: str):
    (tmp_path / "outside.yaml").write_text(TASK)
    (tmp_path / "outside.jsonl").write_text("{}\n")
    extra, needle = DATA[case]
    root = folder(tmp_path, TASK + extra)
    text = refused(root, needle, trust=True)
    assert "lm_eval_trust_remote_code" not in text, "data problems are not lifted by the opt-in"


def test_undefined_task_names_the_tasks_and_what_the_folder_defines(tmp_path: Path):
    root = folder(tmp_path, TASK + "tag: [mc_tag]\n", **{"group.yaml": "group: mc_group\ntask: [tiny_mc]\n"})
    checked = check_task_folder(root, ["tiny_mc", "mc_tag", "mc_group"])
    assert checked.names == ("mc_group", "mc_tag", "tiny_mc")
    refused(
        root, "lm-eval tasks ['piqa'] are not defined in the folder; it defines ['mc_group'", tasks=["piqa"]
    )


def test_includes_inside_the_folder_merge_and_are_checked_where_they_are(tmp_path: Path):
    base = TASK.replace("task: tiny_mc\n", "") + "process_results: !function utils.score\n"
    root = folder(tmp_path, "include: sub/_base_yaml\ntask: tiny_mc\n", **{"sub___base_yaml": base})
    refused(root, "sub/_base_yaml:14: YAML tag !function utils.score")
    root2 = folder(tmp_path / "2", "include: sub/_base_yaml\ntask: tiny_mc\n", **{"sub___base_yaml": TASK})
    assert check_task_folder(root2, ["tiny_mc"]).files == (
        "data/tiny_mc.jsonl",
        "sub/_base_yaml",
        "tiny_mc.yaml",
    )


def test_include_cycles_broken_yaml_and_alias_bombs_are_refused_quickly(tmp_path: Path):
    refused(folder(tmp_path / "a", "include: tiny_mc.yaml\n" + TASK), "includes itself")
    refused(folder(tmp_path / "b", TASK + "doc_to_text: [unclosed\n"), "tiny_mc.yaml:", "not valid YAML")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    root = folder(tmp_path / "c", TASK + bomb)
    assert check_task_folder(root, ["tiny_mc"]).names == ("tiny_mc",)  # 10^9 references, each visited once


def test_every_problem_is_listed_at_once(tmp_path: Path):
    root = folder(
        tmp_path,
        TASK + "process_docs: !function utils.p\ninclude: ../x.yaml\n",
        **{"utils.py": "def p(d):\n    return d\n"},
    )
    text = refused(root, tasks=["tiny_mc", "piqa"])
    lines = [line for line in text.splitlines() if re.match(r"  \S", line)]
    assert len(lines) == 4, text  # include, undefined task, Python file, tag: data problems first
    assert "include '../x.yaml'" in lines[0] and "!function" in lines[-1]
