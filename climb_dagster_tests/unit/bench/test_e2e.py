"""bench e2e (issue 23's protocol) on its quick protocol: every arm searches every target at the same budget, the
targets share proxy runs through the cache, no test page and no multiple-choice item reaches a search or
training, an interrupted protocol resumes without retraining, and the tables come from the results file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from climb_dagster_tests.unit.bench.protocol_args import quick_args

# Builds a real lab (embedding, clustering, tokenizer, token store) and trains ~80 tiny models: ~1 minute.
pytestmark = pytest.mark.slow


def _args(tmp: Path, *extra: str) -> argparse.Namespace:
    from climb_dagster.bench import e2e

    return quick_args(e2e, tmp, *extra)


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    from climb_dagster.bench import e2e

    tmp = tmp_path_factory.mktemp("e2e")
    args = _args(tmp, "--histories", str(tmp / "histories.json"))
    out = e2e.run(args)
    return {"tmp": tmp, "args": args, "out": out, "histories": json.loads((tmp / "histories.json").read_text())}


def test_every_arm_searches_every_target_at_the_same_budget(protocol):
    from climb_dagster.bench.arms import ARMS

    out, args = protocol["out"], protocol["args"]
    assert out["arms"] == list(ARMS) and set(out["targets"]) == {"domain", "blend", "mc"}
    assert out["cells"] == args.labs * args.seeds == len(out["cells_detail"])
    for cell in out["cells_detail"]:
        for target in out["targets"]:
            for arm in ARMS:
                row = cell["targets"][target][arm]
                assert row["proxies"] == args.budget
                assert np.isfinite(row["transfer_test"]) and np.isfinite(row["proxy_test"])
    assert all(len(h["scores"]) == args.budget for h in protocol["histories"])
    climb = [h for h in protocol["histories"] if h["arm"] == "climb"]
    assert {len(set(h["rounds"])) for h in climb} == {3}
    # The transfer model is >= 4x the proxy's parameters and 5x its tokens.
    models = out["models"]
    assert models["transfer"]["params"] >= 4 * models["proxy"]["params"]
    assert models["transfer"]["tokens"] == 5 * models["proxy"]["tokens"]
    paired = out["summary"]["domain"]["paired"]["regmix"]["transfer_test"]
    assert paired["n"] == out["cells"] and paired["df"] == out["cells"] - 1


def test_targets_and_arms_share_runs_through_the_cache(protocol):
    out, args, hist = protocol["out"], protocol["args"], protocol["histories"]

    def rows(target: str, arm: str, seed: int) -> list:
        (h,) = [h for h in hist if (h["target"], h["arm"], h["seed"]) == (target, arm, seed)]
        return h["mixtures"]

    for seed in range(args.seeds):
        # Same seed, same draws: random and RegMix share their proxies; random with climb's design and climb
        # with one round share theirs; climb's first round is the same for every target.
        assert rows("domain", "random", seed) == rows("domain", "regmix", seed) == rows("mc", "random", seed)
        assert rows("blend", "random_design", seed) == rows("blend", "climb_1round", seed)
        first = [h["rounds"].count(0) for h in hist if h["arm"] == "climb"][0]
        assert rows("domain", "climb", seed)[:first] == rows("mc", "climb", seed)[:first]
    searches = len(out["targets"]) * len(out["arms"]) * out["cells"]
    trained = out["lab_details"][0]["runs_trained"]["proxy"]
    assert trained < searches * args.budget / 2
    # Each distinct final mixture is retrained once per seed and scored on every target.
    assert out["lab_details"][0]["runs_reused"] > 0


def test_a_search_only_ever_sees_validation_scores(protocol):
    from climb_dagster.bench.arms import arm_config
    from climb_dagster.bench.runs import LabRuns
    from climb_dagster.core.search.strategies import run_search

    class Recorder:
        def __init__(self) -> None:
            self.jobs: list = []

        def scores(self, jobs):
            self.jobs += jobs
            return [{"domain:val": float(np.sum(m**2)), "train_s": 0.0} for m, *_ in jobs]

    class FakeLab:
        fingerprint = "x"

    pool = Recorder()
    runs = LabRuns(FakeLab(), pool)
    for arm in ("climb", "regmix", "climb_1round"):
        run_search(arm_config(arm, 8, (4.0, 2.0, 1.0), 500), runs.evaluator(1, "domain"), prior=np.full(4, 0.25))
    assert pool.jobs and {(size, splits) for _, _, size, splits in pool.jobs} == {("proxy", ("val",))}


def test_no_test_page_or_mc_item_reaches_training(protocol):
    from climb_dagster.bench import lab as lab_mod
    from climb_dagster.bench.cluster import sample_demo
    from climb_dagster.core.targets.evaluators import load_eval_windows, load_multiple_choice

    args = protocol["args"]
    built, split = lab_mod.build_lab(args, protocol["tmp"] / "leak-lab", 0)
    train = lab_mod._held_out(sample_demo(Path(args.data), args.docs, 0), split)
    held = split.held_titles()
    assert held and not held & set(train["title"].drop_nulls().to_list())
    text = " ".join(" ".join(train["text"].to_list()).split())
    stream = b"".join(np.ascontiguousarray(t).tobytes() for t in built.store.tokens)
    dtype = built.store.tokens[0].dtype
    for target in built.targets:
        for split_name in ("val", "test"):
            for path in target.files[split_name]:
                if target.definition.kind == lab_mod.MC:
                    items = load_multiple_choice(path)
                    assert items
                    for item in items:
                        assert item.choices[item.gold].strip() not in text
                    continue
                windows = load_eval_windows(path)
                assert windows.shape[0] > 0
                for w in windows[:4]:
                    assert np.ascontiguousarray(w.astype(dtype)).tobytes() not in stream
    assert set(built.references) == {"natural", "uniform", "domain_only"}
    for mixture in built.references.values():
        assert abs(sum(mixture) - 1) < 1e-9


def test_an_interrupted_protocol_resumes_without_retraining(protocol):
    from climb_dagster.bench import e2e

    again = e2e.run(protocol["args"])
    assert again["lab_details"][0]["runs_trained"] == {"proxy": 0, "transfer": 0}
    assert again["summary"] == protocol["out"]["summary"]


def test_parallel_workers_score_exactly_like_one_process(protocol):
    from climb_dagster.bench import lab as lab_mod
    from climb_dagster.bench.proxy_pool import ProxyPool
    from climb_dagster.bench.runs import LabRuns
    from climb_dagster.core.search.sampling import sample_mixtures

    built, _ = lab_mod.build_lab(protocol["args"], protocol["tmp"] / "pool-lab", 3)
    mixtures = sample_mixtures(3, built.n_superclusters, 5)
    serial = LabRuns(built).evaluator(7, "mc")(mixtures)
    with ProxyPool(built, workers=2) as pool:
        parallel = LabRuns(built, pool)
        got = parallel.evaluator(7, "mc")(mixtures)
        again = parallel.evaluator(7, "blend")(mixtures[:2])
    assert parallel.trained == {"proxy": 3, "transfer": 0}
    np.testing.assert_array_equal(got, serial)
    assert again.shape == (2,)


def test_doremi_arm_spends_its_own_proxies(protocol):
    from climb_dagster.bench import e2e
    from climb_dagster.bench import lab as lab_mod
    from climb_dagster.bench.runs import LabRuns

    built, _ = lab_mod.build_lab(protocol["args"], protocol["tmp"] / "doremi-lab", 0)
    finals = e2e.search_cell(protocol["args"], built, LabRuns(built), 0, ("doremi",), [])
    assert {info["proxies"] for info in finals.values()} == {2}
    weights = np.asarray(finals[("domain", "doremi")]["mixture"])
    assert weights.shape == (built.n_superclusters,) and abs(weights.sum() - 1) < 1e-3


def test_tables_are_generated_from_the_results_file(protocol, tmp_path):
    from climb_dagster.bench.results import refresh_text, save

    save(tmp_path / "e2e.json", protocol["out"], "python -m climb_dagster.bench e2e --protocol quick")
    text = "<!-- results:e2e--headline -->\nSTALE\n<!-- /results:e2e--headline -->\n"
    text += "<!-- results:e2e -->\nSTALE\n<!-- /results:e2e -->\n"
    new = refresh_text(text, tmp_path, "README.md")
    assert "STALE" not in new and "(results/e2e.json)" in new
    headline, detail = new.split("<!-- results:e2e -->")
    assert "RegMix as published" in headline and "transfer model" in headline and "proxy size" not in headline
    assert "proxy size" in detail and "climb's answer came from" in detail
    assert "cells needed" in detail and "cells needed" not in headline
    n_super = protocol["out"]["lab_details"][0]["n_superclusters"]
    assert f"1 labs ({n_super} super-clusters) × 2 search seeds" in headline
    diff = protocol["out"]["summary"]["blend"]["paired"]["random"]["transfer_test"]
    assert f"{diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" in headline


def test_arm_configurations():
    from climb_dagster.bench.arms import arm_config, arm_names
    from climb_dagster.core.common.errors import ClimbInputError

    one = arm_config("climb_1round", 20, (4.0, 2.0, 1.0), 100)
    assert one.round_sizes() == [20] and one.final == "predicted" and one.initial_design == "maximin"
    design = arm_config("random_design", 20, (4.0, 2.0, 1.0), 100)
    assert design.name == "random" and design.initial_design == "maximin" and design.final == "observed"
    regmix = arm_config("regmix", 20, (4.0, 2.0, 1.0), 100)
    assert regmix.final == "top_k_mean" and regmix.top_k == 100 and regmix.predictor.n_models == 1
    assert arm_config("climb", 20, (4.0, 2.0, 1.0), 100).round_sizes() == [11, 6, 3]
    gp = arm_config("climb_gp_denoised", 20, (4.0, 2.0, 1.0), 100)
    assert gp.predictor.kind == "gp" and gp.final == "denoised" and gp.round_sizes() == [11, 6, 3]
    local = arm_config("climb_local", 20, (4.0, 2.0, 1.0), 100)
    assert local.local_fraction == 0.5 and local.round_sizes() == [11, 6, 3] and local.final == "observed"
    assert arm_names("climb,random", doremi=True) == ("climb", "random", "doremi")
    with pytest.raises(ClimbInputError, match="climb included"):
        arm_names("random,regmix", doremi=False)


def test_climb_variants_against_seed_noise_keep_the_budget_and_share_climbs_first_rounds(protocol):
    """The variants tuned on development labs (issue 23, item 6) spend climb's budget; those that agree with climb
    up to a round share its proxies, and the development view compares them on validation splits only."""
    from climb_dagster.bench import e2e, results_e2e
    from climb_dagster.bench import lab as lab_mod
    from climb_dagster.bench.arms import arm_config, reevaluations
    from climb_dagster.bench.runs import LabRuns

    args = protocol["args"]
    ratios = tuple(float(x) for x in args.ratios.split(","))
    assert reevaluations("climb_reeval", 20, (4.0, 2.0, 1.0)) == 3
    assert arm_config("climb_reeval", 20, (4.0, 2.0, 1.0), 100).round_sizes() == [11, 6]
    assert reevaluations("climb", args.budget, ratios) == 0
    built, _ = lab_mod.build_lab(args, protocol["tmp"] / "variants-lab", 0)
    runs, hist = LabRuns(built), []
    arms = ("climb", "climb_reeval", "climb_seeds", "climb_explore", "climb_gp_denoised", "climb_local")
    finals = e2e.search_cell(args, built, runs, 0, arms, hist)
    assert {info["proxies"] for info in finals.values()} == {args.budget}
    by = {(h["target"], h["arm"]): h for h in hist}
    climb, seeds, reeval = by[("domain", "climb")], by[("domain", "climb_seeds")], by[("domain", "climb_reeval")]
    first = climb["rounds"].count(0)
    # Round 0 is climb's (same proxies, same scores); climb_seeds' later rounds train with other seeds.
    assert seeds["mixtures"][:first] == climb["mixtures"][:first] and seeds["scores"][:first] == climb["scores"][:first]
    assert reeval["mixtures"] == climb["mixtures"][: len(reeval["mixtures"])]
    # The GP arm's round 0 is climb's; its denoised answer is one of its own evaluated mixtures.
    gp = by[("domain", "climb_gp_denoised")]
    assert gp["mixtures"][:first] == climb["mixtures"][:first]
    assert by[("domain", "climb_local")]["mixtures"][:first] == climb["mixtures"][:first]
    gp_answer = finals[("domain", "climb_gp_denoised")]["mixture"]
    assert min(np.abs(np.asarray(gp["mixtures"]) - gp_answer).sum(axis=1)) < 1e-5
    # The re-evaluated answer is one of the mixtures its search had scored best.
    top = np.argsort(reeval["scores"])[: reevaluations("climb_reeval", args.budget, ratios)]
    answer = finals[("domain", "climb_reeval")]["mixture"]
    assert min(np.abs(np.asarray(reeval["mixtures"])[top] - answer).sum(axis=1)) < 1e-5
    cells = [e2e.run_cell(args, built, runs, 0, arms, [])]
    view = results_e2e.development({**protocol["out"], "arms": list(arms), "cells_detail": cells})
    assert "validation" in view and "CLIMB, a proxy seed per round" in view and "test" not in view.split("\n\n")[1]


def test_the_reuse_benchs_lab_code_keys_only_its_own_runs():
    """An edit to bench/reuse_lab.py (which e2e never imports) must not retrain e2e's cached runs."""
    import ast

    from climb_dagster.bench import lab as lab_mod

    root = Path(lab_mod.__file__).resolve().parents[1]
    assert "bench/reuse_lab.py" not in lab_mod.RUN_CODE and "bench/reuse_lab.py" in lab_mod.REUSE_RUN_CODE
    assert all((root / part).exists() for part in lab_mod.RUN_CODE + lab_mod.REUSE_RUN_CODE)
    for name in ("e2e.py", "lab.py", "runs.py", "arms.py"):
        tree = ast.parse((root / "bench" / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "climb_dagster.bench.reuse_lab" not in imported, name
    assert lab_mod.run_code_hash() != lab_mod.run_code_hash(lab_mod.REUSE_RUN_CODE)
