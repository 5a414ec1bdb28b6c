"""A tiny local lm-eval task (YAML + JSONL) for the lm-eval and task-folder tests."""

from __future__ import annotations

from pathlib import Path

TASK_YAML = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/tiny_mc.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{context}}"
doc_to_choice: "{{choices}}"
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def task_folder(tmp_path: Path, yaml: str = TASK_YAML, **files: str) -> Path:
    """`tmp_path/tasks` with the task YAML, one data line, and `files` (name -> text; `__` in a name is `/`)."""
    root = tmp_path / "tasks"
    (root / "data").mkdir(parents=True)
    (root / "data" / "tiny_mc.jsonl").write_text('{"context": "a", "choices": ["b", "c"], "gold": 0}\n')
    (root / "tiny_mc.yaml").write_text(yaml)
    for name, text in files.items():
        (root / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (root / name.replace("__", "/")).write_text(text)
    return root
