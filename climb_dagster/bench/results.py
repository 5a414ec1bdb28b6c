"""Results files of the benchmarks, and the tables README.md and docs/ show from them (issue 25).

A results file `results/<name>.json` is the JSON one `python -m climb_dagster.bench BENCH ... --save
results/<name>.json` printed, plus a `meta` block (date, machine, command, commit, load average) written by the
same call. No table of results is typed by hand: a Markdown file marks where one goes,

    <!-- results:<name> -->
    ...generated...
    <!-- /results:<name> -->

(each marker a line of its own), and `python -m climb_dagster.bench.results` rewrites every marked block of README.md and docs/*.md from
`results/<name>.json`: a line with date, machine and command, then the bench's tables. `--check` writes nothing
and exits 1 naming every stale block (a unit test runs it on the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from climb_dagster.bench import results_e2e, results_reuse, results_transfer
from climb_dagster.bench.markdown import table
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.embedding.encoder import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = "results"
# A marker is a line of its own, so prose and code spans may quote one.
BLOCK = re.compile(r"^<!-- results:([\w.-]+) -->\n(.*?)^<!-- /results:\1 -->$", re.S | re.M)
OPEN_OR_CLOSE = re.compile(r"^<!-- (/?)results:([\w.-]+) -->$", re.M)


@dataclass(frozen=True)
class ResultsMeta:
    """Where and when a results file was measured: `date` when the bench finished, `load_average` (1, 5, 15 min)
    then; `command` is the bench call itself (without --save)."""

    date: str
    machine: str
    command: str
    commit: str
    load_average: tuple[float, float, float]

    @property
    def bench(self) -> str:
        words = shlex.split(self.command)
        return words[words.index("climb_dagster.bench") + 1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "load_average": list(self.load_average)}

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> ResultsMeta:
        fields = ("date", "machine", "command", "commit", "load_average")
        if not isinstance(raw, dict) or any(f not in raw for f in fields):
            raise ClimbInputError(f"{where}: 'meta' must hold {list(fields)}, got {raw!r}")
        if "climb_dagster.bench" not in shlex.split(raw["command"])[:-1]:
            raise ClimbInputError(f"{where}: meta.command {raw['command']!r} is not a climb_dagster.bench call")
        return cls(**{f: raw[f] for f in fields[:-1]}, load_average=tuple(raw["load_average"]))


@dataclass(frozen=True)
class ResultsFile:
    """One benchmark run: its meta block and what the bench printed."""

    meta: ResultsMeta
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta.to_dict(), **self.data}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> ResultsFile:
        data = {k: v for k, v in raw.items() if k != "meta"}
        return cls(meta=ResultsMeta.from_dict(raw.get("meta"), where), data=data)

    @classmethod
    def read(cls, path: Path) -> ResultsFile:
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ClimbInputError(f"{path}: not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ClimbInputError(f"{path}: a results file is a JSON object, got {type(raw).__name__}")
        return cls.from_dict(raw, str(path))


def machine() -> str:
    """CPU model, cores, memory and native bf16 of this machine, plus its NVIDIA GPUs when it has any."""
    cpu, memory = "unknown CPU", ""
    try:
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0].strip() if names else cpu
        kib = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        memory = f", {round(int(kib.group(1)) / 2**20)} GiB" if kib else ""
    except OSError:
        pass
    bf16 = "AVX-512 BF16" if cpu_has_native_bf16() else "no native bf16"
    text = f"{cpu}, {os.cpu_count()} cores{memory}, {bf16}"
    if shutil.which("nvidia-smi"):
        gpus = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.split("\n")
        text += "".join(f", {g.strip()}" for g in gpus if g.strip())
    return text


def _commit() -> str:
    """Short commit of the checkout; `+changes` when the package's code differs from it (the run measured that
    code, not the commit's). Edits elsewhere (docs, tests) do not change a measurement."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--", "climb_dagster") else "")


def save(path: Path, result: dict[str, Any], command: str) -> ResultsFile:
    """Write what a bench printed, with its meta block, to `path`."""
    if "meta" in result:
        raise ClimbInputError(f"{command}: the bench's own output has a 'meta' key; it would be overwritten")
    meta = ResultsMeta(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        command=command,
        commit=_commit(),
        load_average=tuple(round(x, 2) for x in os.getloadavg()),
    )
    saved = ResultsFile(meta=meta, data=result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved.to_dict(), indent=2) + "\n")
    return saved


# --- tables, one renderer per bench -------------------------------------------------------------------------

STRATEGY_NAMES = {
    "climb": "CLIMB",
    "regmix": "RegMix one-shot",
    "random": "random",
    "regmix_climb_predictor": "RegMix with climb's predictor",
}



def _search(data: dict[str, Any]) -> str:
    parts = []
    tuning = data.get("tuning")
    if tuning:
        rows = [
            [
                ", ".join(f"`{k}={v}`" for k, v in g["setting"].items()) or "defaults",
                f"{g['mean_regret']:.4f} ± {g['stderr_regret']:.4f}",
                "chosen" if g["setting"] == tuning["chosen"] else "",
            ]
            for g in tuning["grid"]
        ]
        parts.append(
            f"Tuned on the {tuning['pool']}-mixture tuning pool, search seeds {tuning['seeds'][0]}-"
            f"{tuning['seeds'][1]}:\n\n" + table(["climb setting", "mean regret ± stderr", ""], rows)
        )
    strategies = data.get("strategies", {})
    if strategies:
        rows = [
            [
                STRATEGY_NAMES.get(name, name),
                f"{r['mean_regret']:.4f} ± {r['stderr_regret']:.4f}",
                f"{r['median_regret']:.4f}",
                f"{r['mean_best_observed_regret']:.4f}",
                f"{r['wall_s']:.0f}",
            ]
            for name, r in sorted(strategies.items(), key=lambda kv: kv[1]["mean_regret"])
        ]
        parts.append(
            f"Budget {data['budget']} evaluations, {data['targets']} targets × {data['seeds']} search seeds, "
            f"pool of {data['pool']} mixtures; regret of the final mixture (lower is better):\n\n"
            + table(["strategy", "mean regret ± stderr", "median", "best observed", "wall s"], rows)
        )
    spearman = data.get("predictor_spearman")
    if spearman:
        parts.append(
            f"Predictor Spearman, fit on {spearman['n_train']} train mixtures, scored on {spearman['n_test']} "
            f"test mixtures, mean over targets: single model {spearman['single']['mean']:.3f}, "
            f"8-model ensemble {spearman['ensemble8']['mean']:.3f}"
            + (f", Gaussian process {spearman['gp']['mean']:.3f}." if "gp" in spearman else ".")
        )
    return "\n\n".join(parts)


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _scale(data: dict[str, Any]) -> str:
    sizes = data["sizes"]
    growth = data["growth_exponents"]
    projection = data["projection"]
    n, w = projection["documents"], projection["workers"]
    header = [
        "stage",
        "per drop",
        *(f"step s, {r['docs']:,} docs" for r in sizes),
        "time exponent b",
        f"peak RSS MiB, {sizes[-1]['docs']:,} docs",
        "RSS exponent",
        f"RSS {sizes[-1]['docs']:,} / {sizes[0]['docs']:,}",
        f"projected h, {n:,.0f} docs, W={w}",
    ]
    rows = [
        [
            f"`{stage}`",
            "yes" if g["per_drop"] else "no",
            *(_number(r["stages"][stage]["step_seconds"]) for r in sizes),
            _number(g["time"], 2),
            _number(sizes[-1]["stages"][stage]["peak_rss_mib"], 0),
            _number(g["peak_rss"], 2),
            _number(g.get("peak_rss_ratio_largest_to_smallest"), 2),
            _number(projection["hours_by_stage"].get(stage), 2),
        ]
        for stage, g in growth.items()
    ]
    walls = ", ".join(f"{r['docs']:,} docs in {r['drops']} drops: {r['pipeline_wall_seconds']:,.0f} s" for r in sizes)
    return (
        f"{data['workers']} per-drop runs at once; pipeline wall time {walls}. Projected total at {n:,.0f} "
        f"documents with W={w}: **{projection['hours_total']:,} hours**.\n\n" + table(header, rows)
    )


def _e2e(data: dict[str, Any], view: str = "") -> str:
    if view and view not in results_e2e.VIEWS:
        raise ClimbInputError(f"no view {view!r} of bench e2e; known: {sorted(results_e2e.VIEWS)}")
    return results_e2e.VIEWS[view](data) if view else results_e2e.detail(data)


RENDERERS: dict[str, Callable[..., str]] = {
    "search": _search,
    "scale": _scale,
    "e2e": _e2e,
    "reuse": results_reuse.render,
    "transfer": results_transfer.render,
}
# A block `<name>--<view>` shows a shorter view of results/<name>.json (the README's headline of a bench).
VIEW_SEPARATOR = "--"


def render(name: str, results_dir: Path, link: str) -> str:
    """The generated text of block `name` (or `name--view`): from `results_dir/<name>.json` (linked as `link`),
    or a line saying it is missing."""
    name, _, view = name.partition(VIEW_SEPARATOR)
    path = results_dir / f"{name}.json"
    if not path.exists():
        return f"_Not measured yet: no `{RESULTS_DIR}/{name}.json`._\n"
    results = ResultsFile.read(path)
    bench = results.meta.bench
    if bench not in RENDERERS:
        raise ClimbInputError(f"{path}: no table for bench {bench!r}; known: {sorted(RENDERERS)}")
    m = results.meta
    caption = (
        f"_Generated from [`{RESULTS_DIR}/{name}.json`]({link}): measured {m.date} on {m.machine} (load average "
        f"{' / '.join(f'{x:.1f}' for x in m.load_average)} over 1 / 5 / 15 min at the end), commit {m.commit}:_ "
        f"`{m.command}`"
    )
    if view and bench != "e2e":
        raise ClimbInputError(f"block {name}{VIEW_SEPARATOR}{view}: bench {bench!r} has no views")
    body = RENDERERS[bench](results.data, view) if view else RENDERERS[bench](results.data)
    return f"{caption}\n\n{body}\n"


def _check_markers(text: str, where: str) -> None:
    """Every opening marker has its closing one, in order, with no nesting."""
    open_name: str | None = None
    for found in OPEN_OR_CLOSE.finditer(text):
        closing, name = found.group(1) == "/", found.group(2)
        line = text.count("\n", 0, found.start()) + 1
        if closing != (open_name is not None) or (closing and name != open_name):
            raise ClimbInputError(f"{where}:{line}: unmatched marker {found.group(0)!r}")
        open_name = None if closing else name
    if open_name is not None:
        raise ClimbInputError(f"{where}: marker results:{open_name} is never closed")


def refresh_text(text: str, results_dir: Path, where: str, link_prefix: str = "") -> str:
    """`text` with every marked block regenerated; `link_prefix` leads from the file's folder to the root."""
    _check_markers(text, where)

    def block(found: re.Match[str]) -> str:
        name = found.group(1)
        file = name.partition(VIEW_SEPARATOR)[0]
        body = render(name, results_dir, f"{link_prefix}{RESULTS_DIR}/{file}.json")
        return f"<!-- results:{name} -->\n{body}<!-- /results:{name} -->"

    return BLOCK.sub(block, text)


def documents(root: Path) -> list[Path]:
    """The Markdown files whose result tables are generated: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def refresh(root: Path, check: bool) -> list[Path]:
    """Regenerate the blocks of every document under `root`; return the files that were (or would be) changed."""
    changed = []
    for path in documents(root):
        text = path.read_text()
        prefix = os.path.relpath(root, path.parent).replace(os.sep, "/") + "/"
        new = refresh_text(text, root / RESULTS_DIR, str(path), "" if prefix == "./" else prefix)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m climb_dagster.bench.results", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    changed = refresh(args.root, args.check)
    for path in changed:
        print(f"{'stale' if args.check else 'rewrote'}: {path}", file=sys.stderr)
    if args.check and changed:
        print("run `python -m climb_dagster.bench.results` to regenerate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
