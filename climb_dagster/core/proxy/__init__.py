"""The proxy lab: tokenizer and token stores, mixture-weighted window sampling, the small Llama proxy, its
training (one loop for a single proxy, a pack of proxies and DoReMi's two runs), proxy jobs and their cache,
the base checkpoint checked before training.

May import: common, io, search (DoReMi's weight update, mixture validation).
Importing this package does not import torch, transformers or tokenizers; they load on first use.
"""
