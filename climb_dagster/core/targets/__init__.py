"""Targets: what a proxy is scored on. The user's target config, the kinds of evaluator (`kinds/`: an
`EvaluatorKind` protocol and registry, one file per kind: held-out loss, multiple choice,
lm-evaluation-harness), their preparation into stored files, validation/test splits by title, scoring of
one model or a pack of models, and lm-eval task folders checked as data (`task_folder.py`).

May import: common, io, proxy.
"""
