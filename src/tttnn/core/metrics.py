"""Bits per byte exactly as lm-evaluation-harness ``loglikelihood_rolling`` scores a document.

The document is tokenized once, cut into disjoint windows of at most ``max_length`` tokens; the first
window is predicted from a single prefix token, each later one with the preceding tokens as context, so
every token is scored exactly once. Task values are ratios of sums over documents, never means.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Window:
    """One model input: ``input_ids`` whose last ``len(targets)`` positions predict ``targets``."""

    input_ids: list[int]
    targets: list[int]


def rolling_windows(tokens: Sequence[int], prefix_token: int, max_length: int) -> Iterator[Window]:
    """Yield lm-eval's disjoint rolling windows (context length 1) over ``tokens``."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    n = len(tokens)
    if n == 0:
        return
    first = min(max_length, n)
    yield Window([prefix_token, *tokens[: first - 1]], list(tokens[:first]))
    done = first
    while done < n:
        m = min(n - done, max_length)
        end = done + m
        yield Window(list(tokens[end - max_length - 1 : end - 1]), list(tokens[end - m : end]))
        done = end


def count_words(text: str) -> int:
    """Words as the harness counts them for word perplexity."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    """UTF-8 bytes, the denominator of bits per byte."""
    return len(text.encode("utf-8"))


@torch.no_grad()
def windows_loglik(model: torch.nn.Module, windows: Sequence[Window], batch_size: int = 8) -> float:
    """Sum of target log-probabilities over ``windows``; equal-length windows share a forward pass."""
    device = next(model.parameters()).device
    by_len: dict[int, list[Window]] = {}
    for w in windows:
        by_len.setdefault(len(w.input_ids), []).append(w)
    total = 0.0
    for group in by_len.values():
        for i in range(0, len(group), batch_size):
            batch = group[i : i + batch_size]
            ids = torch.tensor([w.input_ids for w in batch], device=device)
            logits = model(input_ids=ids).logits
            for row, w in enumerate(batch):
                m = len(w.targets)
                logp = F.log_softmax(logits[row, -m:, :].float(), dim=-1)
                tgt = torch.tensor(w.targets, device=device)
                total += float(logp.gather(1, tgt[:, None]).sum().double())
    return total


def document_loglik(
    model: torch.nn.Module, tokens: Sequence[int], prefix_token: int, max_length: int, batch_size: int = 8
) -> float:
    """Rolling log-likelihood (natural log) of one tokenized document; the model must be in eval mode."""
    return windows_loglik(model, list(rolling_windows(tokens, prefix_token, max_length)), batch_size)


@torch.no_grad()
def windows_token_logprobs(
    model: torch.nn.Module, windows: Sequence[Window], batch_size: int = 8
) -> list[torch.Tensor]:
    """Per-target log-probabilities (float32, CPU) of each window, in window order.

    Batches exactly as :func:`windows_loglik` does (equal-length windows share a forward pass), so
    ``float(t.sum().double())`` of window ``i``'s tensor is the term that function adds for it;
    token-level methods (interpolation) thus score exactly the tokens the rolling metric scores.
    """
    device = next(model.parameters()).device
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_len.setdefault(len(w.input_ids), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(windows)
    for group in by_len.values():
        for j in range(0, len(group), batch_size):
            idx = group[j : j + batch_size]
            ids = torch.tensor([windows[i].input_ids for i in idx], device=device)
            logits = model(input_ids=ids).logits
            for row, i in enumerate(idx):
                m = len(windows[i].targets)
                logp = F.log_softmax(logits[row, -m:, :].float(), dim=-1)
                tgt = torch.tensor(windows[i].targets, device=device)
                out[i] = logp.gather(1, tgt[:, None])[:, 0].cpu()
    return [t for t in out if t is not None]
