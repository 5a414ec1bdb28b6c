"""An lm-eval task folder as data: each way its YAML can run code is refused with the file and line, unless the
experiment trusts the folder's code (`lm_eval_trust_remote_code`); the data files it names must lie inside it,
and its `include:` chains must stay inside it. A copy of the folder holds only what was checked.

How lm-eval 0.4 runs code from a task folder (lm_eval/tasks/_yaml_loader.py, _index.py, _factory.py,
api/task.py, api/registry.py, prompts/__init__.py, utils.py):
  - YAML tags: `!function utils.process_docs` executes utils.py beside the YAML (or imports any importable
    module); without libyaml its loader is yaml.FullLoader, which also builds `!!python/name:` objects;
  - `.py` files in the folder are what those tags execute;
  - keys: `class` (a Python task), `custom_dataset` (a callable building the dataset), `use_prompt` naming a
    YAML prompt file (read with yaml.full_load) or promptsource;
  - metrics: `hf_evaluate: true`, or a metric name lm-eval does not register, go to `evaluate.load(name)`,
    which runs the metric script found at that path;
  - datasets: `dataset_path` goes to `datasets.load_dataset`: a builder other than the plain file formats
    reads the hub (or, `pandas`, unpickles); `trust_remote_code`;
  - Jinja templates (doc_to_text, ...) render in an unsandboxed jinja2 Environment, where `x.__class__...`
    reaches any Python object. run_lm_eval also renders them sandboxed.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from climb_dagster.core.common.errors import ClimbInputError

OPT_IN = "lm_eval_trust_remote_code"
# lm-eval skips these folders when it indexes task YAML.
IGNORED_DIRS = ("__pycache__", ".ipynb_checkpoints")
CODE_SUFFIXES = (".py", ".pyc", ".pyd", ".so")
# datasets' packaged builders that read the given data files and nothing else.
FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
BUILTIN_PROMPTS = ("qa-basic",)  # lm_eval.prompts.PROMPT_REGISTRY: strings, no file
MAX_YAML_BYTES = 1 << 20
STANDARD_TAGS = {
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp", "binary", "merge", "value")
}
PLAIN_TAG = {yaml.ScalarNode: "str", yaml.SequenceNode: "seq", yaml.MappingNode: "map"}
METRIC_NAME = re.compile(r"[A-Za-z0-9_]+")
GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class TaskFolder:
    """A checked task folder: the task, group and tag names it defines, and the files a copy must hold
    (task YAML and what it includes, the data files it names, and its Python files when trusted)."""

    root: Path
    names: tuple[str, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class _Finding:
    where: str
    what: str
    code: bool  # refused unless the folder's code is trusted


class _Checker:
    def __init__(self, root: Path, trust_code: bool) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.trust_code = trust_code
        self.findings: list[_Finding] = []
        self.files: set[str] = set()
        self.parsed: dict[Path, tuple[Any, dict[tuple, int]]] = {}

    def rel(self, path: Path | str) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def inside(self, path: Path | str) -> bool:
        real = os.path.realpath(path)
        return real == self.real_root or real.startswith(self.real_root + os.sep)

    def add(self, where: str, what: str, code: bool = False) -> None:
        self.findings.append(_Finding(where, what, code))

    # ------------------------------------------------------------------------------------------- YAML

    def parse(self, path: Path) -> tuple[Any, dict[tuple, int]]:
        """The file's data (custom tags read as plain values, each recorded as a finding) and the line of
        every key path; parsed once however often it is included."""
        if path not in self.parsed:
            self.parsed[path] = self._parse(path)
        data, lines = self.parsed[path]
        return copy.deepcopy(data), lines

    def _parse(self, path: Path) -> tuple[Any, dict[tuple, int]]:
        rel = self.rel(path)
        if path.stat().st_size > MAX_YAML_BYTES:
            self.add(rel, f"YAML file larger than {MAX_YAML_BYTES} bytes")
            return None, {}
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.add(rel, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            return None, {}
        loader = yaml.SafeLoader(text)
        lines: dict[tuple, int] = {}
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            self._tags(node, (), lines, rel, set())
            return loader.construct_document(node), lines
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{rel}:{mark.line + 1}" if mark else rel
            self.add(where, f"not valid YAML ({getattr(exc, 'problem', None) or exc})")
            return None, {}
        finally:
            loader.dispose()

    def _tags(self, node: yaml.Node, keys: tuple, lines: dict[tuple, int], rel: str, seen: set[int]) -> None:
        """Record custom tags (made plain, so that constructing the document runs nothing) and key lines."""
        if id(node) in seen:  # an alias: already walked
            return
        seen.add(id(node))
        lines.setdefault(keys, node.start_mark.line + 1)
        if node.tag not in STANDARD_TAGS:
            value = f" {node.value:.60}" if isinstance(node, yaml.ScalarNode) and node.value else ""
            self.add(
                f"{rel}:{node.start_mark.line + 1}",
                f"YAML tag {node.tag}{value} (lm-eval imports and runs code for it)",
                code=True,
            )
            node.tag = f"tag:yaml.org,2002:{PLAIN_TAG[type(node)]}"
        if isinstance(node, yaml.MappingNode):
            names: set[str] = set()
            for key, value in node.value:
                self._tags(key, keys, lines, rel, seen)
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                if name in names:  # a repeated key: the last one wins, as when the document is built
                    for stale in [k for k in lines if k[: len(keys) + 1] == (*keys, name)]:
                        del lines[stale]
                names.add(name)
                self._tags(value, (*keys, name), lines, rel, seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._tags(item, (*keys, i), lines, rel, seen)

    def load(self, path: Path, trail: tuple[Path, ...] = ()) -> tuple[dict, dict[tuple, str]]:
        """A YAML file with its includes merged as lm-eval merges them (included first, own keys win), and
        where each key path comes from ("file:line")."""
        self.files.add(self.rel(path))
        data, lines = self.parse(path)
        if not isinstance(data, dict):
            return {}, {}
        rel = self.rel(path)
        where = {keys: f"{rel}:{line}" for keys, line in lines.items()}
        includes = data.pop("include", None)
        merged: dict = {}
        merged_where: dict[tuple, str] = {}
        for inc in includes if isinstance(includes, list) else [] if includes is None else [includes]:
            here = where.get(("include",), rel)
            target = self._include(inc, path, here, trail)
            if target is None:
                continue
            cfg, cfg_where = self.load(target, (*trail, path))
            cfg.pop("task_list", None)
            merged_where = {k: v for k, v in merged_where.items() if k[0] not in cfg} | {
                k: v for k, v in cfg_where.items() if k and k[0] in cfg
            }
            merged.update(cfg)
        merged_where = {k: v for k, v in merged_where.items() if k[0] not in data}
        merged_where |= {k: v for k, v in where.items() if k and k[0] in data}
        merged.update(data)
        return merged, merged_where

    def _include(self, inc: Any, path: Path, here: str, trail: tuple[Path, ...]) -> Path | None:
        if not isinstance(inc, str) or not inc:
            self.add(here, f"include {inc!r} is not a file name")
            return None
        target = path.parent / inc
        if Path(inc).is_absolute() or not self.inside(target):
            self.add(here, f"include {inc!r} leaves the task folder; copy that file into the folder")
            return None
        if not target.is_file():
            self.add(here, f"include {inc!r} not found in the task folder")
            return None
        if target in trail or target == path:
            self.add(here, f"include {inc!r} includes itself (a cycle)")
            return None
        return target

    # ------------------------------------------------------------------------------------------ checks

    def check_config(self, cfg: dict, where: dict[tuple, str], rel: str) -> None:
        for keys, mapping in _mappings(cfg):
            at = where.get(keys, where.get(keys[:1], rel))
            self._code_keys(mapping, keys, where, at)
            if keys == () and isinstance(cfg.get("task"), str) and "group" not in cfg and "class" not in cfg:
                self._data(mapping, keys, where, at, required="custom_dataset" not in cfg)
            elif keys != () and ("dataset_path" in mapping or "dataset_kwargs" in mapping):
                self._data(mapping, keys, where, at, required=False)
        for keys, text in _strings(cfg):
            if "{{" in text or "{%" in text:
                for problem, code in _template_problems(text):
                    self.add(where.get(keys, rel), f"template {text!r:.80}: {problem}", code=code)

    def _code_keys(self, mapping: dict, keys: tuple, where: dict[tuple, str], at: str) -> None:
        def line(key: str) -> str:
            return where.get((*keys, key), at)

        if "class" in mapping:
            self.add(line("class"), "`class`: a task written in Python", code=True)
        if "custom_dataset" in mapping:
            self.add(line("custom_dataset"), "`custom_dataset`: a dataset built by Python code", code=True)
        prompt = mapping.get("use_prompt")
        if prompt is not None and str(prompt).split(":")[0] not in BUILTIN_PROMPTS:
            self.add(
                line("use_prompt"), f"`use_prompt: {prompt}` reads a prompt file or promptsource", code=True
            )
        if mapping.get("hf_evaluate"):
            self.add(
                line("hf_evaluate"), "`hf_evaluate`: the metric is a script run by evaluate.load", code=True
            )
        if mapping.get("trust_remote_code"):
            self.add(line("trust_remote_code"), "`trust_remote_code`: the dataset runs code", code=True)
        metric = mapping.get("metric")
        if keys[-2:-1] == ("metric_list",) and not (
            isinstance(metric, str) and METRIC_NAME.fullmatch(metric)
        ):
            self.add(
                line("metric"),
                f"metric {metric!r} is not a metric name (letters, digits, _): lm-eval passes unknown names "
                "to evaluate.load, which runs the script at that path",
                code=True,
            )

    def _data(self, cfg: dict, keys: tuple, where: dict[tuple, str], at: str, required: bool) -> None:
        def line(*sub: Any) -> str:
            return where.get((*keys, *sub), at)

        builder = cfg.get("dataset_path")
        if builder is None:
            if required:
                self.add(at, f"task names no dataset_path; use one of {FILE_BUILDERS} with data_files")
            return
        if builder not in FILE_BUILDERS:
            self.add(
                line("dataset_path"),
                f"dataset_path {builder!r} is not one of {FILE_BUILDERS}: the harness runs offline on a copy "
                "of the folder, so the task must read data files inside it (dataset_kwargs.data_files)",
            )
            return
        kwargs = cfg.get("dataset_kwargs") or {}
        if not isinstance(kwargs, dict):
            self.add(line("dataset_kwargs"), f"dataset_kwargs must be a mapping, got {kwargs!r:.60}")
            return
        if kwargs.get("data_dir") is not None:
            self.add(line("dataset_kwargs", "data_dir"), "data_dir: list the files in data_files instead")
        data_files = kwargs.get("data_files")
        if not data_files:
            self.add(line("dataset_kwargs"), f"dataset_path {builder!r} needs dataset_kwargs.data_files")
            return
        for sub, pattern in _data_patterns(data_files):
            self._data_file(pattern, line("dataset_kwargs", "data_files", *sub))

    def _data_file(self, pattern: Any, at: str) -> None:
        if not isinstance(pattern, str) or not pattern:
            self.add(at, f"data file {pattern!r} is not a path")
            return
        if "://" in pattern or "::" in pattern or Path(pattern).is_absolute():
            self.add(at, f"data file {pattern!r} is not a file inside the task folder; copy it in")
            return
        matches = sorted(self.root.glob(pattern)) if GLOB_CHARS.search(pattern) else [self.root / pattern]
        found = False
        for match in matches:
            if not self.inside(match):
                self.add(at, f"data file {pattern!r} lies outside the task folder; copy it in")
                return
            if match.is_file():
                found = True
                self.files.add(self.rel(match))
        if not found:
            self.add(at, f"data file {pattern!r} matches no file in the task folder")


def check_task_folder(
    root: str | os.PathLike[str], tasks: Sequence[str], trust_code: bool = False
) -> TaskFolder:
    """Check a local lm-eval task folder and the task names asked of it; raise one ClimbInputError listing
    every problem ("file:line: what"), code findings last with the opt-in that allows them."""
    folder = Path(root)
    if not folder.is_dir():
        raise ClimbInputError(f"lm-eval task folder {str(folder)!r} not found (tasks {list(tasks)})")
    if not tasks:
        raise ClimbInputError(f"no lm-eval tasks named for task folder {str(folder)!r}")
    checker = _Checker(folder, trust_code)
    yamls = sorted(
        p for p in folder.rglob("*.yaml") if not set(p.relative_to(folder).parts) & set(IGNORED_DIRS)
    )
    if not yamls:
        raise ClimbInputError(f"lm-eval task folder {str(folder)!r} holds no task .yaml files")
    for path in sorted(p for p in folder.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()):
        checker.add(checker.rel(path), "Python file (what `!function` tags execute)", code=True)
        checker.files.add(checker.rel(path))
    names: set[str] = set()
    for path in yamls:
        cfg, where = checker.load(path)
        checker.check_config(cfg, where, checker.rel(path))
        names |= _defined(cfg)
    unknown = [t for t in tasks if t not in names]
    if unknown:
        checker.add(
            "lm_eval_tasks",
            f"lm-eval tasks {unknown} are not defined in the folder; it defines {sorted(names)}",
        )
    _raise(folder, checker.findings, trust_code)
    files = checker.files if trust_code else {f for f in checker.files if not f.endswith(CODE_SUFFIXES)}
    return TaskFolder(folder, tuple(sorted(names)), tuple(sorted(files)))


def copy_task_folder(folder: TaskFolder, dest: Path) -> Path:
    """Copy only the checked files of `folder` into the new folder `dest`."""
    for rel in folder.files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder.root / rel, target)
    return dest


def _raise(folder: Path, findings: list[_Finding], trust_code: bool) -> None:
    problems = [f for f in findings if not (f.code and trust_code)]
    if not problems:
        return
    problems.sort(key=lambda f: f.code)
    shown = [f"  {f.where}: {f.what}" for f in problems[:20]]
    more = [f"  ... and {len(problems) - 20} more"] if len(problems) > 20 else []
    advice = []
    if any(f.code for f in problems):
        advice = [
            f"The folder holds code that lm-eval would run. Task folders are data: remove it, or set "
            f"`{OPT_IN}: true` in the experiment's target to run it (read that code first)."
        ]
    raise ClimbInputError(
        "\n".join([f"lm-eval task folder {str(folder)!r} refused:", *shown, *more, *advice])
    )


def _defined(cfg: dict) -> set[str]:
    """Names lm-eval's index registers for one merged YAML (lm_eval/tasks/_index.py TaskIndex.process_cfg)."""
    if "class" in cfg or ("task" in cfg and "group" not in cfg):
        name = cfg.get("task")
        if not isinstance(name, str):
            return set()
        tags = cfg.get("tag") or []
        return {name, *([tags] if isinstance(tags, str) else [t for t in tags if isinstance(t, str)])}
    group = cfg.get("group")
    return {group} if isinstance(group, str) else set()


def _mappings(data: Any, keys: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    """(key path, mapping) for every mapping in the data, each container visited once (YAML aliases share)."""
    seen: set[int] = set()
    stack = [(keys, data)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict | list) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            yield path, node
            stack.extend(((*path, k), v) for k, v in node.items())
        else:
            stack.extend(((*path, i), v) for i, v in enumerate(node))


def _strings(data: Any) -> Iterator[tuple[tuple, str]]:
    for keys, mapping in _mappings(data):
        for key, value in mapping.items():
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, str):
                    yield ((*keys, key, i) if isinstance(value, list) else (*keys, key)), item


def _data_patterns(data_files: Any) -> Iterator[tuple[tuple, Any]]:
    """(key path below data_files, pattern) for a str, a list, or a split -> str/list mapping."""
    if isinstance(data_files, dict):
        for split, value in data_files.items():
            for sub, pattern in _data_patterns(value):
                yield (split, *sub), pattern
    elif isinstance(data_files, list):
        for i, pattern in enumerate(data_files):
            yield (i,), pattern
    else:
        yield (), data_files


def _template_problems(text: str) -> list[tuple[str, bool]]:
    """What in a Jinja template reaches past the document's fields: (problem, is code)."""
    from jinja2 import Environment, TemplateSyntaxError, nodes

    try:
        tree = Environment().parse(text)
    except TemplateSyntaxError as exc:
        return [(f"not a valid template ({exc.message})", False)]
    problems = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Const)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            problems.append((f"reads the attribute {node.attr!r} (Python internals)", True))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
                problems.append((f"reads the item {node.arg.value!r} (Python internals)", True))
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            problems.append(("uses the `attr` filter (reads any attribute)", True))
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and "__" in node.value:
            problems.append((f"holds the string {node.value!r} (Python internals)", True))
    return problems


def sandbox_templates() -> None:
    """Render lm-eval's Jinja templates in a sandbox (its module-level environment is not one): a template
    that reaches for Python internals raises instead of running. Idempotent."""
    import lm_eval.utils as lm_utils
    from jinja2 import BaseLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if isinstance(lm_utils.env, ImmutableSandboxedEnvironment):
        return
    env = ImmutableSandboxedEnvironment(
        loader=BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True
    )
    env.filters.update(lm_utils.env.filters)
    lm_utils.env = env
