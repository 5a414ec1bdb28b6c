"""The pure core: every algorithm of the pipeline, with no Dagster import (assets call into it).

Stage packages, each importing only the packages listed in its own `__init__` (the order below is the
layering; `climb_dagster_tests/unit/test_layout.py` checks it and that no two modules import each other):

    common      errors, schema, hashing, keys, direction, timing, code version, stored-object wrappers
    io          settings, storage, publication, landing, corpus drops, kept documents, retention, redaction
    embedding   the document encoder (torch / ONNX int8), device sizing, multi-GPU sharding
    quality     raters (1-5) by name, pruning of low-quality clusters
    clustering  k-means fit/assign, super-cluster merge and profiles, the clustering stage in one process
    search      mixture sampling, the predictor, search strategies (a registry), history, round decisions
    proxy       token stores, proxy LM, one training loop (single, pack, DoReMi), proxy jobs and their cache
    targets     what proxies are scored on: evaluator kinds (a registry), preparation, splits, scoring
    reuse       past proxy runs re-expressed over a new clustering (cluster map, error, reuse rows)
    experiment  the experiment config and the typed records that cross asset boundaries
    export      blend weights and a sampled training set for training frameworks
    report      plots and UI tables
"""
