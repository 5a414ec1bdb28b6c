"""Ops of the jobs that materialize no asset (jobs.py wires them)."""
