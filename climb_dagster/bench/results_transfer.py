"""bench transfer's table: per target, each size's seed noise against the spread between mixtures, and how the
proxy's ranking carries to the transfer model."""

from __future__ import annotations

from typing import Any

from climb_dagster.bench.markdown import table


def render(data: dict[str, Any]) -> str:
    models = data["models"]
    header = [
        "target",
        "proxy: seed std / mixture std, reliability",
        "transfer: seed std / mixture std, reliability",
        "proxy → transfer Spearman: seed means / one proxy seed / proxy's better half",
        "transfer regret of the one-seed proxy best",
    ]
    rows = []
    for target, s in data["summary"].items():
        p, t, r = s["proxy_noise"], s["transfer_noise"], s["rank_transfer"]
        rows.append(
            [
                target,
                f"{p['seed_std']:.3f} / {p['mixture_std']:.3f}, {p['reliability']:.2f}",
                f"{t['seed_std']:.3f} / {t['mixture_std']:.3f}, {t['reliability']:.2f}",
                f"{r['mean_rank']:+.2f} / {r['one_seed_rank']:+.2f} / {r['top_half_rank']:+.2f}",
                f"{r['best_regret']:.3f}",
            ]
        )
    intro = (
        f"Labs {', '.join(str(x) for x in data['labs'])}; {data['mixtures']} mixtures per lab (maximin over "
        f"Dirichlet draws around the token shares, as climb's first round), each trained with "
        f"{data['noise_seeds']} seeds at proxy size ({models['proxy']['params'] / 1e6:.2f}M parameters, "
        f"{models['proxy']['tokens'] / 1e3:.0f}k tokens) and transfer size "
        f"({models['transfer']['params'] / 1e6:.2f}M, {models['transfer']['tokens'] / 1e3:.0f}k), scored on the "
        f"{data['split']} splits; means over labs. Reliability: the share of one run's score variance that is the "
        f"mixture's rather than the seed's; regret: the transfer model's seed-mean loss of the mixture one proxy "
        f"seed ranks best, minus the best mixture's; {data['wall_s'] / 60:.0f} min with {data['workers']} workers."
    )
    return intro + "\n\n" + table(header, rows)
