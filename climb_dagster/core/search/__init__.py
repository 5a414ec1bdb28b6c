"""Mixture search: sampling on the simplex, the predictor (LightGBM or a Gaussian process), the search strategies
(`strategies/`: a `SearchStrategy` protocol and registry, one file per strategy, the round-level API and the driver),
DoReMi's weight update, offline pools, the search history read from evaluations and the decisions of a round.

May import: common, io. LightGBM loads on first use.
"""
