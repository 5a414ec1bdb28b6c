"""Mixture search: sampling on the simplex, the LightGBM predictor, the strategies (one registry), offline
pools, the search history read from evaluations and the decisions of a round.

May import: common, io. LightGBM loads on first use.
"""
