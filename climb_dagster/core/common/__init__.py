"""Shared foundations: errors, column schema, content hashes, key validation, score direction, timing,
the code version, typed wrappers of stored objects, core configs from validated fields.

May import: nothing else of climb_dagster.
"""
