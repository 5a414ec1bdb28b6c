"""CLIMB's bootstrapping rounds as assets built per round k (experiments partitions):
round_k_mixtures -> round_k_proxy_evaluations (one mapped step per proxy) -> round_k_predictor.

Rounds beyond an experiment's own count (regmix/random use one) materialize empty tables and refit the
same predictor, so every experiment has the same asset graph. The decisions live in core/search/rounds.py.
"""

from climb_dagster.assets.experiments import MAX_ROUNDS
from climb_dagster.assets.rounds.evaluations import evaluations_asset, failed_proxies_check
from climb_dagster.assets.rounds.mixtures import mixtures_asset
from climb_dagster.assets.rounds.predictor import predictor_asset


def build_round(k: int) -> list:
    """The three assets (with their checks) of round k (1-based)."""
    return [mixtures_asset(k), evaluations_asset(k), predictor_asset(k)]


ROUND_ASSETS = [a for k in range(1, MAX_ROUNDS + 1) for a in build_round(k)]
ROUND_CHECKS = [failed_proxies_check(k) for k in range(1, MAX_ROUNDS + 1)]
