"""Command line for quality raters: `python -m climb_dagster.quality train ...`."""
