"""The tables of `bench e2e` (issue 23's protocol) from its results file: the headline (transfer test loss,
climb against every arm with paired 95% intervals) and the detail (proxy-size test, references, climb's winner
rounds and predictor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from climb_dagster.bench.markdown import table
from climb_dagster.core.common.direction import Direction
from climb_dagster.core.report.stats import cells_to_exclude_zero, paired_difference

ARM_NAMES = {
    "climb": "CLIMB",
    "random_design": "random, climb's design",
    "climb_1round": "CLIMB, one round",
    "regmix": "RegMix as published",
    "random": "random",
    "doremi": "DoReMi",
    "climb_smoothed": "CLIMB, smoothed answer",
    "climb_reeval": "CLIMB, last round re-evaluates the best",
    "climb_explore": "CLIMB, half of later rounds explore",
    "climb_seeds": "CLIMB, a proxy seed per round",
    "climb_seeds_smoothed": "CLIMB, a seed per round, smoothed answer",
    "climb_gp": "CLIMB, Gaussian-process predictor",
    "climb_gp_denoised": "CLIMB, GP predictor, denoised answer",
    "climb_local": "CLIMB, half the candidates near the best",
}
REFERENCE_NAMES = {
    "natural": "natural",
    "uniform": "uniform",
    "domain_only": "target domain's super-clusters",
}


def _n(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _difference(p: dict[str, Any]) -> str:
    if "mean" not in p:
        return f"– ({p.get('n', 0)} finished cells)"
    bold = "**" if p["high"] < 0 or p["low"] > 0 else ""
    extra = f", {p['excluded_diverged']} diverged" if p.get("excluded_diverged") else ""
    return f"{bold}{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]{bold}{extra}"


def _target_label(name: str, t: dict[str, Any]) -> str:
    unit = "bits/byte" if t["kind"] == "mc" else "loss"
    return f"{name}: {', '.join(t['domains'])} ({unit})"


def _comparison(data: dict[str, Any], measure: str) -> str:
    rows = []
    for t, s in data["summary"].items():
        label = _target_label(t, data["targets"][t])
        climb = s["arms"]["climb"][measure]
        first = f"{label}, climb {_n(climb)}"
        for i, (arm, p) in enumerate(s["paired"].items()):
            d = p[measure]
            win = "–" if "win_rate" not in d else f"{d['win_rate']:.0%}"
            pval = "–" if "p_value" not in d else f"{d['p_value']:.3f}"
            rows.append(
                [
                    "" if i else first,
                    ARM_NAMES.get(arm, arm),
                    _n(s["arms"][arm][measure]),
                    _difference(d),
                    pval,
                    win,
                ]
            )
    header = [
        "target, climb's mean",
        "arm",
        "arm's mean",
        "climb − arm, 95% t interval",
        "p",
        "climb better in",
    ]
    return table(header, rows)


def _superclusters(data: dict[str, Any]) -> str:
    """What the searches chose among: " (8 super-clusters each)", or each lab's count when they differ."""
    counts = [lab["n_superclusters"] for lab in data.get("lab_details", []) if "n_superclusters" in lab]
    if not counts:
        return ""
    if len(set(counts)) > 1:
        return f" ({', '.join(str(c) for c in counts)} super-clusters)"
    return f" ({counts[0]} super-clusters{' each' if len(counts) > 1 else ''})"


def headline(data: dict[str, Any]) -> str:
    m = data["models"]
    g = data["goal"]
    first = next(iter(data["summary"].values()))
    n = next(iter(first["paired"].values()))["transfer_test"].get("n", 0)
    sizes = (
        f"proxy {m['proxy']['params'] / 1e6:.2f}M parameters × {m['proxy']['tokens'] / 1e3:.0f}k tokens, transfer "
        f"model {m['transfer']['params'] / 1e6:.2f}M × {m['transfer']['tokens'] / 1e3:.0f}k "
        f"({m['transfer']['params'] / m['proxy']['params']:.1f}× parameters, "
        f"{m['transfer']['tokens'] / m['proxy']['tokens']:.0f}× tokens)"
    )
    verdict = (
        f"Goal (climb below random-with-design and RegMix, interval excluding 0, on ≥ 2 targets): "
        f"**{'met' if g['met'] else 'not met'}** ({g['targets_won']} of {len(g['per_target'])} targets)."
    )
    return (
        f"Protocol `{data['protocol']}`: {data['labs']} labs{_superclusters(data)} × {data['seeds']} search seeds "
        f"= {n} paired cells, "
        f"{data['budget']} proxies per search, {sizes}; {data['wall_s'] / 60:.0f} min with {data['workers']} "
        f"workers. Test loss of each arm's final mixture retrained on the **transfer model** (lower is better; "
        f"bold: the interval excludes 0, df = {max(n - 1, 0)}):\n\n"
        + _comparison(data, "transfer_test")
        + f"\n\n{verdict}"
    )


def detail(data: dict[str, Any]) -> str:
    parts = [headline(data)]
    parts.append(
        "The same final mixtures retrained at **proxy size** with fresh seeds:\n\n"
        + _comparison(data, "proxy_test")
    )
    rows = []
    for t, s in data["summary"].items():
        refs = ", ".join(
            f"{REFERENCE_NAMES.get(k, k)} {_n(v['transfer_test'])} / {_n(v['proxy_test'])}"
            for k, v in s["references"].items()
        )
        rounds = ", ".join(f"round {k}: {v}" for k, v in s["climb_winner_rounds"].items())
        oof = ", ".join(_n(x, 2) for x in s["climb_oof_spearman_by_round"])
        acc = s["arms"]["climb"].get("transfer_test_accuracy")
        rows.append([t, refs, rounds, oof, _n(acc, 2) if acc is not None else "–"])
    parts.append(
        table(
            [
                "target",
                "references: transfer / proxy test",
                "climb's answer came from",
                "climb predictor OOF Spearman by round",
                "climb MC accuracy (transfer)",
            ],
            rows,
        )
    )
    parts.append(per_lab(data))
    parts.append(power(data, "transfer_test"))
    return "\n\n".join(parts)


def power(data: dict[str, Any], measure: str) -> str:
    """Per target, what this protocol could resolve between climb and random-with-climb's-design on `measure`:
    the room above the design (how far the best final of any arm in a cell lies beyond the design's, an
    optimistic bound since it picks the luckiest arm), climb's mean difference and its cell-to-cell sd, and the
    cells a 95% t interval would need to exclude 0 at that mean and sd."""
    cells = data.get("cells_detail", [])
    direction = Direction(data.get("direction", Direction.MINIMIZE))
    rows = []
    for t in data["summary"]:
        per = [c["targets"][t] for c in cells if "random_design" in c["targets"][t]]
        if len(per) < 2:
            continue
        finals = [[v[measure] for v in r.values() if measure in v] for r in per]
        room = float(np.mean([direction.regret(r["random_design"][measure], f) for r, f in zip(per, finals, strict=True)]))
        diffs = np.asarray([r["climb"][measure] - r["random_design"][measure] for r in per])
        mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
        need = cells_to_exclude_zero(mean, sd)
        verdict = "never (no difference)" if need is None else str(need)
        if need is not None and direction.better(0.0, mean):
            verdict += " (the design better)"
        rows.append([t, _n(room), f"{mean:+.3f} ({_n(sd)})", verdict, str(len(per))])
    if not rows:
        return ""
    return (
        f"What {len(cells)} cells can resolve against random with climb's design ({measure.replace('_', ' ')}): "
        "the room is how far the best final of any arm in a cell lies beyond the design's (optimistic: it takes "
        "the luckiest arm); the cells are those a 95% t interval needs to exclude 0 at the measured mean and "
        "cell-to-cell sd:\n\n"
        + table(
            [
                "target",
                "room above the design (mean per cell)",
                "climb − design, mean (cell sd)",
                "cells needed",
                "cells run",
            ],
            rows,
        )
    )


def per_lab(data: dict[str, Any]) -> str:
    """Mean climb − arm (transfer test) within each lab: whether one lab carries the pooled result."""
    cells = data.get("cells_detail", [])
    labs = sorted({c["lab"] for c in cells})
    arms = [a for a in data["arms"] if a != "climb"]
    rows = []
    for t in data["summary"]:
        for arm in arms:
            means = []
            for lab in labs:
                diffs = [
                    c["targets"][t]["climb"]["transfer_test"] - c["targets"][t][arm]["transfer_test"]
                    for c in cells
                    if c["lab"] == lab
                ]
                means.append(f"{sum(diffs) / len(diffs):+.3f}" if diffs else "–")
            rows.append([t, ARM_NAMES.get(arm, arm), *means])
    return (
        "Mean climb − arm on the transfer test within each lab (seeds of one lab share its corpus and clustering):\n\n"
        + table(["target", "arm", *(f"lab {lab}" for lab in labs)], rows)
    )


def development(data: dict[str, Any]) -> str:
    """A tuning run on labs that are not reported (variants of climb): each arm against climb and against
    random-with-design on the **validation** splits (transfer model and proxy-size retrains), the only scores a
    tuning choice may look at."""
    cells = data.get("cells_detail", [])
    labs = sorted({c["lab"] for c in cells})
    rows = []
    for t in data["summary"]:
        per = [c["targets"][t] for c in cells]
        for arm in [a for a in data["arms"] if a != "climb"]:
            row = [t, ARM_NAMES.get(arm, arm)]
            for ref, measure in (("climb", "transfer_val"), ("random_design", "transfer_val"), ("climb", "proxy_val")):
                pairs = [(r[arm][measure], r[ref][measure]) for r in per if ref in r and measure in r[arm]]
                if arm == ref or len(pairs) < 2:
                    row.append("–")
                    continue
                d = paired_difference([a for a, _ in pairs], [b for _, b in pairs], Direction.MINIMIZE)
                bold = "**" if d.excludes_zero else ""
                row.append(f"{bold}{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{bold}, better in {d.win_rate:.0%}")
            rows.append(row)
    n = len(cells)
    return (
        f"Development run (labs {', '.join(str(x) for x in labs)}{_superclusters(data)}; {n} cells of "
        f"{data['budget']} proxies; {data['wall_s'] / 60:.0f} min with {data['workers']} workers). Arm − reference "
        f"on the **validation** splits, paired over the cells with a 95% t interval (df = {max(n - 1, 0)}); "
        "negative: the arm is better:\n\n"
        + table(
            [
                "target",
                "arm",
                "arm − CLIMB, transfer val",
                "arm − random with design, transfer val",
                "arm − CLIMB, proxy-size val",
            ],
            rows,
        )
        + "\n\n"
        + power(data, "transfer_val")
    )


VIEWS = {"headline": headline, "development": development}
