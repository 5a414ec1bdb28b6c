"""An experiment: target + search strategy + budget + proxy config as one validated record, and the typed
records that cross asset boundaries (experiment record, token-store and tokenizer references, final mixture).

May import: common, io, search, proxy, targets, reuse (earlier experiments' evidence).
"""
