"""The proxies' tokenizer: a byte-level BPE trained on a bounded sample of the corpus, and the names the token
stores share (`core/proxy/store.py` reads a store, `core/proxy/drop_store.py` tokenizes one drop)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common.errors import ClimbInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


EOD_TOKEN = "<|endoftext|>"



PAD_TOKEN = "<|pad|>"



SPECIAL_TOKENS = (EOD_TOKEN, PAD_TOKEN)



TOKENIZER_FILE = "tokenizer.json"



INDEX_FILE = "index.json"



STORE_FORMAT = "climb-tokens-v1"
STORE_FORMAT_V2 = "climb-tokens-v2"



def bounded_sample(texts: Iterable[str], max_docs: int, max_doc_chars: int, seed: int) -> list[str]:
    """A seeded uniform sample of at most `max_docs` texts (reservoir), each cut to `max_doc_chars`.

    Memory is bounded by `max_docs * max_doc_chars` whatever the corpus size.
    """
    if max_docs <= 0 or max_doc_chars <= 0:
        raise ClimbInputError(f"max_docs and max_doc_chars must be positive, got {max_docs}, {max_doc_chars}")
    rng = random.Random(seed)
    reservoir: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ClimbInputError(f"tokenizer training text #{i} is {type(text).__name__}, not str")
        if i < max_docs:
            reservoir.append(text[:max_doc_chars])
        else:
            j = rng.randint(0, i)
            if j < max_docs:
                reservoir[j] = text[:max_doc_chars]
    return reservoir



def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | os.PathLike[str],
    vocab_size: int = 4096,
    seed: int = 0,
    max_docs: int = 20_000,
    max_doc_chars: int = 4_000,
    min_frequency: int = 2,
) -> Path:
    """Train a byte-level BPE tokenizer on a bounded seeded sample of `texts`; save it to `out_dir`.

    Byte-level, so any text encodes without unknown tokens. The end-of-document token is id 0.
    Writes tokenizer.json plus the files `PreTrainedTokenizerFast.from_pretrained` reads.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 300 <= vocab_size <= 2**32:
        raise ClimbInputError(
            f"tokenizer vocab_size must be an integer >= 300 (bytes + specials), got {vocab_size!r}"
        )
    sample = [t for t in bounded_sample(texts, max_docs, max_doc_chars, seed) if t.strip()]
    if not sample:
        raise ClimbInputError("no non-empty text to train the tokenizer on")
    # Sorted so that the sample, not the order it arrived in, determines the merges.
    sample.sort()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample, trainer=trainer, length=len(sample))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _wrap(tok).save_pretrained(str(out))
    return out



def _wrap(tok: Any) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOD_TOKEN, bos_token=EOD_TOKEN, pad_token=PAD_TOKEN
    )



def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `train_tokenizer` (a directory, or the tokenizer.json in it)."""
    from tokenizers import Tokenizer

    p = Path(path)
    file = p / TOKENIZER_FILE if p.is_dir() else p
    if not file.is_file():
        raise ClimbInputError(f"tokenizer file not found: {file}")
    return _wrap(Tokenizer.from_file(str(file)))



def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)
