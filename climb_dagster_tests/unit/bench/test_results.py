"""Result tables are generated from results files (issue 25): `--save` writes a results file with its meta
block, `python -m climb_dagster.bench.results` rebuilds the marked tables from it, and `--check` fails on a stale
table. The repository's own README.md and docs/ pass that check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from climb_dagster.bench.__main__ import main as bench_main
from climb_dagster.bench.results import ROOT, ResultsFile, main, refresh_text, save
from climb_dagster.core.common.errors import ClimbInputError

BLOCK = "<!-- results:{0} -->\nold text\n<!-- /results:{0} -->"


def _pool(folder: Path, split: str = "train", rows: int = 40, option: str = "pool") -> list[str]:
    """A pool of `rows` mixtures over 3 domains whose loss falls with domain a's share, as RegMix-style CSVs."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    mixtures = rng.dirichlet(np.ones(3), size=rows).round(3)
    mixtures[:, 2] = (1 - mixtures[:, :2].sum(axis=1)).round(3)
    loss = 5 - mixtures[:, 0] + 0.01 * rng.standard_normal(rows)
    weights, scores = folder / f"{split}_mixture.csv", folder / f"{split}_loss.csv"
    weights.write_text("index,a,b,c\n" + "".join(f"{i},{m[0]},{m[1]},{m[2]}\n" for i, m in enumerate(mixtures)))
    scores.write_text("index,t\n" + "".join(f"{i},{v}\n" for i, v in enumerate(loss)))
    return [f"--{option}-mixtures", str(weights), f"--{option}-scores", str(scores)]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root with a README and a docs page that mark where the `search` table goes."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"# x\n\nbefore\n\n{BLOCK.format('search')}\n\nafter\n")
    (tmp_path / "docs" / "page.md").write_text(f"# page\n\n{BLOCK.format('search')}\n")
    return tmp_path


def test_save_writes_what_the_bench_printed_with_its_meta_block(tmp_path: Path, capsys) -> None:
    out = tmp_path / "results" / "search.json"
    args = ["search", *_pool(tmp_path), "--budget", "8", "--seeds", "2", "--strategies", "random,climb"]
    assert bench_main([*args, "--save", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = ResultsFile.read(out)
    assert saved.data == printed
    assert saved.meta.command == "python -m climb_dagster.bench " + " ".join(args)
    assert saved.meta.bench == "search" and len(saved.meta.load_average) == 3
    assert "cores" in saved.meta.machine and saved.meta.date[:2] == "20" and saved.meta.commit
    with pytest.raises(ClimbInputError, match="'meta' key"):
        save(tmp_path / "x.json", {"meta": 1}, "python -m climb_dagster.bench search")


def test_tables_are_rebuilt_from_the_results_file_and_check_catches_a_stale_one(repo: Path, capsys) -> None:
    bench_main(["search", *_pool(repo), "--budget", "8", "--seeds", "2", "--strategies", "random,climb",
                "--save", str(repo / "results" / "search.json")])
    capsys.readouterr()
    assert main(["--check", "--root", str(repo)]) == 1
    assert "stale" in capsys.readouterr().err and "old text" in (repo / "README.md").read_text()

    assert main(["--root", str(repo)]) == 0
    readme = (repo / "README.md").read_text()
    data = json.loads((repo / "results" / "search.json").read_text())
    climb = data["strategies"]["climb"]
    assert "old text" not in readme and readme.startswith("# x\n\nbefore\n") and readme.endswith("\n\nafter\n")
    assert f"| CLIMB | {climb['mean_regret']:.4f} ± {climb['stderr_regret']:.4f} |" in readme
    assert f"measured {data['meta']['date']} on {data['meta']['machine']}" in readme
    assert "[`results/search.json`](results/search.json)" in readme
    assert "[`results/search.json`](../results/search.json)" in (repo / "docs" / "page.md").read_text()
    assert main(["--check", "--root", str(repo)]) == 0

    data["strategies"]["climb"]["mean_regret"] = 0.5
    (repo / "results" / "search.json").write_text(json.dumps(data))
    assert main(["--check", "--root", str(repo)]) == 1
    assert (repo / "README.md").read_text() == readme


def test_search_tables_show_the_tuning_grid_and_the_predictor_spearman(repo: Path, capsys) -> None:
    bench_main([
        "search", *_pool(repo, "train"), *_pool(repo, "test"), *_pool(repo, "train", option="tune"),
        "--tune", "final=observed,predicted", "--budget", "8", "--seeds", "2", "--strategies", "random,climb",
        "--predictor-spearman", "--save", str(repo / "results" / "search.json"),
    ])
    capsys.readouterr()
    data = json.loads((repo / "results" / "search.json").read_text())
    main(["--root", str(repo)])
    readme = (repo / "README.md").read_text()
    chosen = data["tuning"]["chosen"]["climb_final"]
    assert f"| `climb_final={chosen}` |" in readme and "| chosen |" in readme
    assert "fit on 40 train mixtures, scored on 40 test mixtures" in readme
    assert f"single model {data['predictor_spearman']['single']['mean']:.3f}" in readme


def test_a_block_without_its_results_file_says_so(repo: Path) -> None:
    assert main(["--root", str(repo)]) == 0
    assert "_Not measured yet: no `results/search.json`._" in (repo / "README.md").read_text()


def test_scale_table_from_a_sample_of_the_scale_bench_output(tmp_path: Path) -> None:
    def size(docs: int, seconds: float) -> dict:
        return {
            "docs": docs,
            "drops": docs // 50_000,
            "pipeline_wall_seconds": 10 * seconds,
            "stages": {
                "embed": {"per_drop": True, "step_seconds": seconds, "peak_rss_mib": 300.0},
                "centroids": {"per_drop": False, "step_seconds": 2.0, "peak_rss_mib": None},
            },
        }

    sample = {
        "bench": "scale",
        "workers": 2,
        "sizes": [size(100_000, 10.0), size(300_000, 30.0)],
        "growth_exponents": {
            "embed": {"per_drop": True, "time": 1.0, "peak_rss": 0.0, "peak_rss_ratio_largest_to_smallest": 1.0},
            "centroids": {"per_drop": False, "time": 0.0, "peak_rss": None},
        },
        "projection": {"documents": 8e8, "workers": 64, "hours_by_stage": {"embed": 0.35, "centroids": 0.0},
                       "hours_total": 0.4},
    }
    save(tmp_path / "results" / "scale.json", sample, "python -m climb_dagster.bench scale --docs 100000,300000")
    text = refresh_text(BLOCK.format("scale"), tmp_path / "results", "README.md")
    assert "| `embed` | yes | 10.0 | 30.0 | 1.00 | 300 | 0.00 | 1.00 | 0.35 |" in text
    assert "| `centroids` | no | 2.0 | 2.0 | 0.00 | – | – | – | 0.00 |" in text
    assert "projected h, 800,000,000 docs, W=64" in text and "**0.4 hours**" in text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("<!-- results:a -->\nx\n", "results:a is never closed"),
        ("x\n<!-- /results:a -->\n", "README.md:2: unmatched marker"),
        ("<!-- results:a -->\n<!-- /results:b -->\n", "README.md:2: unmatched marker"),
    ],
)
def test_unmatched_markers_are_named_with_their_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ClimbInputError, match=needle):
        refresh_text(text, tmp_path, "README.md")


def test_a_results_file_of_a_bench_without_a_table_is_refused(tmp_path: Path) -> None:
    save(tmp_path / "embed.json", {"ratio": 1.5}, "python -m climb_dagster.bench embed --docs 12")
    with pytest.raises(ClimbInputError, match=r"embed.json: no table for bench 'embed'"):
        refresh_text(BLOCK.format("embed"), tmp_path, "README.md")
    (tmp_path / "bad.json").write_text(json.dumps({"meta": {"date": "2026-12-04"}}))
    with pytest.raises(ClimbInputError, match="bad.json: 'meta' must hold"):
        refresh_text(BLOCK.format("bad"), tmp_path, "README.md")


def test_the_repository_tables_are_up_to_date() -> None:
    assert main(["--check", "--root", str(ROOT)]) == 0, "run `python -m climb_dagster.bench.results`"


def test_reuse_table_shows_every_arm_and_the_goal_as_measured() -> None:
    from climb_dagster.bench.results_reuse import render

    paired = {"mean": 0.01, "low": -0.02, "high": 0.04, "win_rate": 0.4}
    arm = {"transfer_test": 5.4, "proxy_test": 5.8, "proxies": 20.0, "reused": 0.0}
    data = {
        "summary": {
            "goal_met": False,
            "updates": {
                "refit": {
                    "means": {"scratch": arm, "reuse": {**arm, "proxies": 6.0, "reused": 20.0}},
                    "paired_vs_scratch": {"reuse": {"transfer_test": paired, "proxy_test": None}},
                    "scratch_transfer_test_95": [5.3, 5.5],
                    "goal": {"reuse_within_scratch_interval": False, "new_proxies_share": 0.3, "at_most_half": True},
                }
            },
        },
        "labs": [{"update": "refit", "old_docs": 10, "new_docs": 10, "map": {"gone_share": 0.0}, "freeze": "not run"}],
    }
    text = render(data)
    assert "| refit | reuse | 6.0 | 20.0 | 5.400 | 5.800 | +0.010 [-0.020, +0.040], wins 40% |" in text
    assert "**outside**" in text and "30% of scratch's new proxies" in text and "**not met**" in text
