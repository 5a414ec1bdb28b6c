"""bench reuse's table: per update and arm, the proxies it trained and reused, its test losses, and its paired
difference to the search from scratch."""

from __future__ import annotations

from typing import Any

from climb_dagster.bench.markdown import table

ARM_NAMES = {
    "scratch": "from scratch",
    "reuse": "reuse",
    "freeze": "reuse, freeze-and-expand",
    "stale": "previous final, not searched again",
}


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _diff(p: dict[str, Any] | None) -> str:
    if not p or "mean" not in p:
        return "–"
    return f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}], wins {p['win_rate']:.0%}"


def render(data: dict[str, Any]) -> str:
    summary = data["summary"]["updates"]
    facts = {lab["update"]: lab for lab in data["labs"]}
    header = [
        "update",
        "arm",
        "new proxies",
        "reused",
        "transfer test loss",
        "proxy test loss",
        "arm − scratch, transfer (95% t)",
    ]
    rows = []
    notes = []
    for kind, s in summary.items():
        for arm, m in s["means"].items():
            paired = s["paired_vs_scratch"].get(arm, {}) if arm != "scratch" else {}
            rows.append(
                [
                    kind,
                    ARM_NAMES.get(arm, arm),
                    _f(m["proxies"], 1),
                    _f(m["reused"], 1),
                    _f(m["transfer_test"]),
                    _f(m["proxy_test"]),
                    _diff(paired.get("transfer_test")) if paired else "",
                ]
            )
        g, f = s["goal"], facts.get(kind, {})
        lo, hi = s["scratch_transfer_test_95"]
        mp = f.get("map", {})
        notes.append(
            f"- **{kind}**: {f.get('old_docs', '?')} → {f.get('new_docs', '?')} documents, "
            f"{f.get('old_superclusters', '?')} → {f.get('new_superclusters', '?')} super-clusters "
            f"({f.get('unchanged_superclusters', '?')} unchanged); of the old clustering's tokens "
            f"{mp.get('gone_share', 0):.1%} gone, {mp.get('changed_share', 0):.1%} in changed fine clusters. "
            f"Scratch's transfer test loss 95% interval [{lo:.3f}, {hi:.3f}]; reuse "
            f"{'within' if g['reuse_within_scratch_interval'] else '**outside**'} it with "
            f"{g['new_proxies_share']:.0%} of scratch's new proxies. Freeze-and-expand: {f.get('freeze', '–')}."
        )
    verdict = "met" if data["summary"]["goal_met"] else "**not met**"
    return (
        table(header, rows)
        + "\n\n"
        + "\n".join(notes)
        + f"\n\nGoal (reuse within scratch's interval with ≤ 50% of its new proxies, on every update): {verdict}."
    )
