"""Fused LM head + cross-entropy, computed in row chunks (imported lazily: it imports torch).

With a 4096-token vocabulary and d_model 128, the head and its softmax are over half of a proxy step.
Materialising the (batch*block, vocab) logits, then their log-softmax, then its gradient streams
~100 MB through memory several times; computing the loss and both gradients chunk by chunk keeps each
logits chunk in cache, with one fused softmax pass over it. Same FLOPs and the same math as
`F.cross_entropy(hidden @ weight.T, targets)`, in a fixed order, so it stays deterministic.
"""

from __future__ import annotations

import torch

from climb_dagster.core.proxy.config import HEAD_CHUNK_ROWS


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows):  # type: ignore[override]
        n = hidden.shape[0]
        grad_hidden = torch.empty_like(hidden)
        # Accumulated transposed, (d, vocab): h.T @ probs measured 2x faster than probs.T @ h on CPU.
        grad_weight_t = weight.new_zeros((weight.shape[1], weight.shape[0]))
        total = hidden.new_zeros((), dtype=torch.float32)
        rows = torch.arange(min(chunk_rows, n), device=hidden.device)
        for start in range(0, n, chunk_rows):
            h = hidden[start : start + chunk_rows]
            y = targets[start : start + chunk_rows]
            logits = h @ weight.t()
            top = logits.amax(dim=-1)
            picked = logits.gather(1, y[:, None]).squeeze(1)
            # One fused softmax pass instead of logsumexp + exp: the largest probability is exactly
            # 1 / sum(exp(logits - top)), so logsumexp = top - log(max prob), which never underflows.
            probs = torch.softmax(logits, dim=-1)
            del logits
            total += (top - probs.amax(dim=-1).log() - picked).sum()
            # d(sum of losses)/d(logits) = softmax - onehot; the 1/n of the mean goes into the matmuls.
            probs[rows[: y.shape[0]], y] -= 1.0
            torch.mm(probs, weight, out=grad_hidden[start : start + chunk_rows])
            grad_weight_t.addmm_(h.t(), probs, alpha=1.0 / n)
        grad_hidden.mul_(1.0 / n)
        ctx.save_for_backward(grad_hidden, grad_weight_t.t().contiguous())
        return total / n

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_out, grad_weight * grad_out, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int = HEAD_CHUNK_ROWS
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` (rows of logits) against `targets`.

    Args:
        hidden: (n, d) final hidden states.
        weight: (vocab, d) LM head (tied embedding).
        targets: (n,) int64 next-token ids.
    """
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _FusedLinearCrossEntropy.apply(hidden, weight, targets, chunk_rows)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_rows):
        logits = hidden[start : start + chunk_rows] @ weight.t()
        total += torch.nn.functional.cross_entropy(
            logits, targets[start : start + chunk_rows], reduction="sum"
        )
    return total / hidden.shape[0]
