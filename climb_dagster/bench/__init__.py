"""Benchmarks (not tests): `python -m climb_dagster.bench NAME ...` prints one JSON object on stdout."""
