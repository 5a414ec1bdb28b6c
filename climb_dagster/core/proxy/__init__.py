"""The proxy lab: tokens, mixture sampling, small Llama proxies, their training and target evaluation.

Importing this package does not import torch, transformers or tokenizers; they load on first use.
"""

from climb_dagster.core.proxy.config import ProxyConfig, ProxyModelConfig, ProxyTrainConfig
from climb_dagster.core.proxy.evaluate import (
    build_eval_windows,
    build_multiple_choice,
    load_eval_windows,
    load_multiple_choice,
    split_by_title,
)
from climb_dagster.core.proxy.sampler import sample_windows, validate_mixture
from climb_dagster.core.proxy.targets import EvaluatorSpec, TargetSpec, evaluate_components, evaluate_target
from climb_dagster.core.proxy.tokens import TokenStore, load_tokenizer, train_tokenizer, write_token_store
from climb_dagster.core.proxy.train import ProxyResult, train_proxy

__all__ = [
    "EvaluatorSpec",
    "ProxyConfig",
    "ProxyModelConfig",
    "ProxyResult",
    "ProxyTrainConfig",
    "TargetSpec",
    "TokenStore",
    "build_eval_windows",
    "build_multiple_choice",
    "evaluate_components",
    "evaluate_target",
    "load_eval_windows",
    "load_multiple_choice",
    "load_tokenizer",
    "sample_windows",
    "split_by_title",
    "train_proxy",
    "train_tokenizer",
    "validate_mixture",
    "write_token_store",
]
