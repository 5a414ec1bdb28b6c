"""Target evaluators: held-out loss on fixed windows, and lm-evaluation-harness style multiple choice.

Also the builders of their inputs: a train/held-out split by title unit, the held-out windows file
(.npy + .json sidecar), and a multiple-choice JSONL made from held-out documents.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_dagster.core.common import schema
from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.proxy.tokens import EOD_TOKEN, load_tokenizer, token_dtype

if TYPE_CHECKING:
    import polars as pl

NORMALIZATIONS = ("none", "char", "token")


# --- split ---------------------------------------------------------------------------------------------


def split_by_title(
    docs: pl.DataFrame, heldout_fraction: float = 0.2, seed: int = 0, title_col: str = schema.TITLE
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split documents into (train, held-out) by title unit: all chunks of one page land on one side.

    Titles are shuffled with `seed` and taken for the held-out side until it holds at least
    `heldout_fraction` of the documents. A null title is its own unit (keyed by row). Both frames keep
    the input row order.
    """
    import polars as pl

    if title_col not in docs.columns:
        raise ClimbInputError(f"document table has no {title_col!r} column (columns: {docs.columns})")
    if not 0.0 < heldout_fraction < 1.0:
        raise ClimbInputError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
    if docs.height < 2:
        raise ClimbInputError(f"need at least 2 documents to split, got {docs.height}")
    unit = (
        pl.when(pl.col(title_col).is_null())
        .then(pl.concat_str(pl.lit("\x00row:"), pl.int_range(pl.len()).cast(pl.Utf8)))
        .otherwise(pl.col(title_col).cast(pl.Utf8))
    )
    units = docs.select(unit.alias("unit"))["unit"]
    counts = units.value_counts().sort("unit")
    if counts.height < 2:
        raise ClimbInputError(f"all {docs.height} documents share one {title_col!r}; cannot split by title")
    order = np.random.default_rng(seed).permutation(counts.height)
    sizes = counts["count"].to_numpy()[order]
    target = heldout_fraction * docs.height
    # Smallest prefix of shuffled units reaching the target, but never all units.
    n_units = min(int(np.searchsorted(np.cumsum(sizes), target)) + 1, counts.height - 1)
    heldout_units = set(counts["unit"].gather(order[:n_units]).to_list())
    mask = units.is_in(list(heldout_units))
    return docs.filter(~mask), docs.filter(mask)


# --- held-out loss ---------------------------------------------------------------------------------------


def build_eval_windows(
    texts: Sequence[str],
    tokenizer_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    block_size: int,
    max_windows: int = 256,
) -> Path:
    """Tokenize held-out `texts` into fixed, non-overlapping windows of block_size+1 tokens (.npy).

    Documents are concatenated in the given order with the end-of-document token between them; when
    there are more than `max_windows` windows an evenly spaced subset is kept. Writes `out_path`
    (.npy, uint16/uint32) and a .json sidecar with counts.
    """
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ClimbInputError(f"no held-out text to build the evaluation windows {out_path}")
    if block_size <= 0 or max_windows <= 0:
        raise ClimbInputError(f"block_size and max_windows must be positive, got {block_size}, {max_windows}")
    tok = load_tokenizer(tokenizer_dir)
    backend = tok.backend_tokenizer
    vocab = backend.get_vocab_size(with_added_tokens=True)
    eod = backend.token_to_id(EOD_TOKEN)
    dtype = token_dtype(vocab)
    ids = np.concatenate(
        [
            np.asarray(e.ids + [eod], dtype=dtype)
            for e in backend.encode_batch_fast(texts, add_special_tokens=False)
        ]
    )
    span = block_size + 1
    n = ids.size // span
    if n == 0:
        raise ClimbInputError(
            f"held-out text for {out_path} has {ids.size} tokens, fewer than one window of {span} tokens"
        )
    windows = ids[: n * span].reshape(n, span)
    if n > max_windows:
        windows = windows[np.linspace(0, n - 1, max_windows).round().astype(int)]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, windows)
    os.replace(tmp, out)
    meta = {
        "n_windows": int(windows.shape[0]),
        "block_size": block_size,
        "n_docs": len(texts),
        "vocab_size": vocab,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return out


def load_eval_windows(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an evaluation windows file (no pickle); missing or empty → ClimbInputError naming the path."""
    p = Path(path)
    if not p.is_file():
        raise ClimbInputError(f"evaluation windows file not found: {p}")
    try:
        windows = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise ClimbInputError(f"evaluation windows file {p} is not a readable .npy array: {exc}") from exc
    if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] < 2:
        raise ClimbInputError(f"evaluation windows file {p} is empty or malformed: shape {windows.shape}")
    return windows


def eval_loss(model: Any, windows: np.ndarray, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats) of `model` over every position of every window."""
    import torch

    from climb_dagster.core.proxy.loss import linear_cross_entropy

    if windows.size == 0:
        raise ClimbInputError("evaluation windows are empty")
    vocab = model.config.vocab_size
    if int(windows.max()) >= vocab:
        raise ClimbInputError(
            f"evaluation windows hold token id {int(windows.max())} >= model vocab_size {vocab}"
        )
    was_training = model.training
    model.eval()
    device = model.lm_head.weight.device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = torch.from_numpy(windows[start : start + batch_size].astype(np.int64)).to(device)
            hidden = model.model(input_ids=batch[:, :-1], use_cache=False).last_hidden_state
            targets = batch[:, 1:].reshape(-1)
            loss = linear_cross_entropy(hidden.reshape(targets.shape[0], -1), model.lm_head.weight, targets)
            total += float(loss) * targets.shape[0]
            count += targets.shape[0]
    model.train(was_training)
    return total / count


# --- multiple choice ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MultipleChoiceItem:
    context: str
    choices: tuple[str, ...]
    gold: int


def load_multiple_choice(path: str | os.PathLike[str]) -> list[MultipleChoiceItem]:
    """Read a JSONL of {"context", "choices", "gold"} items (lm-evaluation-harness style)."""
    p = Path(path)
    if not p.is_file():
        raise ClimbInputError(f"multiple-choice file not found: {p}")
    return parse_multiple_choice(p.read_bytes(), str(p))


def parse_multiple_choice(data: bytes, source: str) -> list[MultipleChoiceItem]:
    """Validate and parse multiple-choice JSONL bytes; every error names `source` (the user's file) and line."""
    items = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if lineno == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClimbInputError(f"{source}:{lineno}: invalid UTF-8 at byte {exc.start}") from exc
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ClimbInputError(f"{source}:{lineno}: not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise ClimbInputError(f"{source}:{lineno}: expected a JSON object, got {type(row).__name__}")
        context, choices, gold = row.get("context"), row.get("choices"), row.get("gold")
        if not isinstance(context, str):
            raise ClimbInputError(f"{source}:{lineno}: 'context' must be a string, got {context!r}")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)
        ):
            raise ClimbInputError(
                f"{source}:{lineno}: 'choices' must be >= 2 non-empty strings, got {choices!r}"
            )
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise ClimbInputError(
                f"{source}:{lineno}: 'gold' must be an index into the {len(choices)} choices, got {gold!r}"
            )
        items.append(MultipleChoiceItem(context, tuple(choices), gold))
    if not items:
        raise ClimbInputError(f"multiple-choice file is empty: {source}")
    return items


def choice_batch(
    tokenizer: Any, item: MultipleChoiceItem, block_size: int
) -> tuple[Any, list[tuple[int, int]]]:
    """Token ids (n_choices, width) of context + each choice, right-padded, and each choice's span.

    Context and choice are encoded separately (the choice carries its own leading space) and the
    context is cut from the left so that context + choice fit in `block_size + 1` tokens.
    """
    import torch

    ctx = tokenizer.encode(item.context, add_special_tokens=False)
    conts = [tokenizer.encode(c, add_special_tokens=False) for c in item.choices]
    if any(not c for c in conts):
        raise ClimbInputError(f"a choice encodes to no tokens: {item.choices!r}")
    seqs, spans = [], []
    for cont in conts:
        cont = cont[-block_size:]
        keep = max(1, block_size + 1 - len(cont))
        # No context at all (empty string): condition on the end-of-document token, as at a document start.
        left = ctx[-keep:] if ctx else [tokenizer.eos_token_id]
        seq = left + cont
        seqs.append(seq)
        spans.append((len(seq) - len(cont), len(seq)))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, spans


def span_logprobs(logits: Any, ids: Any, spans: list[tuple[int, int]]) -> list[tuple[float, int]]:
    """(sum of log-probs, n tokens) of each span, from the logits of ids[:, :-1]."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    out = []
    for i, (a, b) in enumerate(spans):
        targets = ids[i, a:b].to(logp.device)
        # Position t predicts token t+1.
        lp = logp[i, a - 1 : b - 1].gather(1, targets[:, None]).sum()
        out.append((float(lp), b - a))
    return out


def choice_logprobs(
    model: Any, tokenizer: Any, item: MultipleChoiceItem, block_size: int
) -> list[tuple[float, int]]:
    """(sum of log-probs, n tokens) of each choice as a continuation of the context (see choice_batch)."""
    import torch

    ids, spans = choice_batch(tokenizer, item, block_size)
    with torch.no_grad():
        # Right padding under a causal mask never influences the real positions: no attention mask needed.
        inputs = ids[:, :-1].to(model.lm_head.weight.device)
        logits = model(input_ids=inputs, use_cache=False).logits
    return span_logprobs(logits, ids, spans)


def choice_accuracy(
    items: Sequence[MultipleChoiceItem], logprobs: Sequence[list[tuple[float, int]]], normalize: str
) -> float:
    """Fraction of items whose gold choice has the highest normalised log-likelihood (ties: first)."""
    correct = 0
    for item, lps in zip(items, logprobs, strict=True):
        scores = []
        for choice, (lp, n_tok) in zip(item.choices, lps, strict=True):
            denom = {"none": 1.0, "char": float(len(choice)), "token": float(n_tok)}[normalize]
            scores.append(lp / denom)
        correct += int(int(np.argmax(scores)) == item.gold)
    return correct / len(items)


def eval_multiple_choice(
    model: Any, tokenizer: Any, items: Sequence[MultipleChoiceItem], normalize: str = "char"
) -> float:
    """Accuracy: fraction of items whose gold choice has the highest (normalised) log-likelihood.

    normalize: "none" (sum of log-probs, harness `acc`), "char" (divided by the choice's length in
    characters, harness `acc_norm`) or "token" (per token). Ties go to the first choice.
    """
    if normalize not in NORMALIZATIONS:
        raise ClimbInputError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    return choice_accuracy(items, all_choice_logprobs(model, tokenizer, items), normalize)


def all_choice_logprobs(
    model: Any, tokenizer: Any, items: Sequence[MultipleChoiceItem]
) -> list[list[tuple[float, int]]]:
    """(sum of log-probs, n tokens) of every choice of every item, the model in eval mode meanwhile."""
    if not items:
        raise ClimbInputError("no multiple-choice items to evaluate")
    block = int(getattr(model.config, "max_position_embeddings", 128))
    was_training = model.training
    model.eval()
    logprobs = [choice_logprobs(model, tokenizer, item, block) for item in items]
    model.train(was_training)
    return logprobs


def gold_bits_per_byte(items: Sequence[MultipleChoiceItem], logprobs: Sequence[list[tuple[float, int]]]) -> float:
    """Bits per UTF-8 byte of the gold choices given their contexts, pooled over items (total bits / total
    bytes): a continuous multiple-choice score, lower is better, that small models move on long before
    their accuracy leaves chance."""
    nats = sum(-lps[item.gold][0] for item, lps in zip(items, logprobs, strict=True))
    n_bytes = sum(len(item.choices[item.gold].encode("utf-8")) for item in items)
    return float(nats / math.log(2) / n_bytes)


def build_multiple_choice(
    texts: Sequence[str],
    out_path: str | os.PathLike[str],
    n_items: int = 200,
    n_choices: int = 4,
    context_words: int = 40,
    continuation_words: int = 10,
    seed: int = 0,
    distractor_texts: Sequence[str] | None = None,
) -> Path:
    """Write a multiple-choice JSONL from held-out documents: which continuation follows the passage?

    For each item a document and an offset are drawn; the context is `context_words` words of it and
    the gold choice the next `continuation_words` words; the distractors are spans of the same length
    from other documents of `texts`, or of `distractor_texts` when given (e.g. other domains: an easier
    task that still separates weak proxies). Choices start with a space (harness convention). Seeded.
    """
    if n_choices < 2 or n_items <= 0 or context_words <= 0 or continuation_words <= 0:
        raise ClimbInputError(
            f"bad multiple-choice sizes: n_items={n_items}, n_choices={n_choices}, "
            f"context_words={context_words}, continuation_words={continuation_words}"
        )
    words = [t.split() for t in texts if isinstance(t, str)]
    need = context_words + continuation_words
    eligible = [i for i, w in enumerate(words) if len(w) >= need]
    if len(eligible) < n_choices:
        raise ClimbInputError(
            f"only {len(eligible)} documents have >= {need} words; need {n_choices} to build {out_path}"
        )
    if distractor_texts is None:
        pool_words, pool = words, eligible
    else:
        pool_words = [t.split() for t in distractor_texts if isinstance(t, str)]
        pool = [i for i, w in enumerate(pool_words) if len(w) >= continuation_words]
        if len(pool) < n_choices - 1:
            raise ClimbInputError(
                f"only {len(pool)} distractor documents have >= {continuation_words} words; need {n_choices - 1}"
            )
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_items):
        doc = eligible[int(rng.integers(len(eligible)))]
        w = words[doc]
        start = int(rng.integers(len(w) - need + 1))
        context = " ".join(w[start : start + context_words])
        gold_text = " " + " ".join(w[start + context_words : start + need])
        others = [i for i in pool if i != doc] if distractor_texts is None else pool
        picks = rng.choice(len(others), size=n_choices - 1, replace=False)
        distractors = []
        for j in picks.tolist():
            ow = pool_words[others[j]]
            s = int(rng.integers(len(ow) - continuation_words + 1))
            distractors.append(" " + " ".join(ow[s : s + continuation_words]))
        gold = int(rng.integers(n_choices))
        choices = distractors[:gold] + [gold_text] + distractors[gold:]
        lines.append(json.dumps({"context": context, "choices": choices, "gold": gold}, ensure_ascii=False))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out
