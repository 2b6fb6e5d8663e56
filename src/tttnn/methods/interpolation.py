"""kNN-LM-style interpolation baseline: a context-free unigram distribution from the neighbours' tokens,
mixed into the LM's next-token probability, ``p = (1 - alpha) p_LM + alpha p_kNN``.

``p_kNN = sum_i w_i h_i`` with ``h_i`` the normalised token histogram of neighbour ``i`` (all of its tokens)
and ``w = softmax(-distance / temperature)`` over the neighbours (uniform when a distance is unknown).
One forward pass over the document's rolling windows gives every alpha of the grid; alpha is chosen
afterwards (:mod:`tttnn.report.stats`): ``choose_alpha`` on held-out validation documents, ``oracle_alpha`` on the
test documents (what the authors reported, optimistic), and ``with_alpha`` turns a record into checkpoints ``[0, k]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from tttnn.core.metrics import count_bytes, count_words, rolling_windows, windows_token_logprobs
from tttnn.core.resume import PerDocument
from tttnn.core.settings import TTTConfig
from tttnn.models.load import document_tokens, prefix_token_id, tokenize

__all__ = [
    "DEFAULT_ALPHAS",
    "InterpolationRunner",
    "InterpolationSettings",
    "knn_distribution",
    "mixture_loglik",
]

DEFAULT_ALPHAS = [round(0.01 * i, 2) for i in range(20)]  # the authors' grid 0, 0.01, ..., 0.19


class InterpolationSettings(BaseModel):
    """Settings of the interpolation baseline (k, max_length, eval batch and prefix come from TTTConfig)."""

    model_config = ConfigDict(extra="forbid")

    alphas: list[float] = Field(default_factory=lambda: list(DEFAULT_ALPHAS))
    temperature: float = Field(1.0, gt=0)  # neighbour weights softmax(-distance / temperature)


def knn_distribution(
    neighbor_tokens: Sequence[Sequence[int]], distances: Sequence[float], vocab_size: int, temperature: float = 1.0
) -> torch.Tensor | None:
    """The mixed unigram distribution (float64, ``vocab_size``) of the neighbours, or None without tokens."""
    keep = [(toks, d) for toks, d in zip(neighbor_tokens, distances) if len(toks) > 0]
    if not keep:
        return None
    dist = torch.tensor([d if d is not None else math.nan for _, d in keep], dtype=torch.float64)
    if torch.isfinite(dist).all():
        w = torch.softmax(-dist / temperature, dim=0)
    else:
        w = torch.full((len(keep),), 1.0 / len(keep), dtype=torch.float64)
    p = torch.zeros(vocab_size, dtype=torch.float64)
    for (toks, _), wi in zip(keep, w):
        ids = torch.tensor(list(toks), dtype=torch.long)
        if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
            raise ValueError(f"token id out of the vocabulary of size {vocab_size}")
        h = torch.bincount(ids, minlength=vocab_size).to(torch.float64)
        p += wi * h / h.sum()
    return p


def mixture_loglik(lm_logprobs: torch.Tensor, knn_probs: torch.Tensor, alpha: float) -> float:
    """Sum over tokens of ``log((1 - alpha) p_LM + alpha p_kNN)``, in float64."""
    lp = lm_logprobs.to(torch.float64)
    if alpha == 0:
        return float(lp.sum())
    log_lm = lp + math.log1p(-alpha) if alpha < 1 else torch.full_like(lp, -math.inf)
    return float(torch.logaddexp(log_lm, math.log(alpha) + torch.log(knn_probs.to(torch.float64))).sum())


class InterpolationRunner(PerDocument):
    """Scores each document's rolling windows once and the mixture for every alpha of the grid."""

    def __init__(
        self, model: torch.nn.Module, tokenizer, cfg: TTTConfig, settings: InterpolationSettings | None = None
    ) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.settings = settings or InterpolationSettings()
        if any(not 0 <= a <= 1 for a in self.settings.alphas):
            raise ValueError(f"alphas must lie in [0, 1], got {self.settings.alphas}")
        self.prefix = prefix_token_id(tokenizer, cfg.prefix_token)
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])

    def run_document(self, doc_id: str, text: str, neighbors: Sequence[Any]) -> dict[str, Any]:
        """Log-likelihood of the document for every alpha; checkpoint 0 is the plain rolling metric."""
        cfg, st = self.cfg, self.settings
        tokens = document_tokens(self.tokenizer, doc_id, text)
        used = list(neighbors[: cfg.k])
        t = time.perf_counter()
        p_knn = knn_distribution(
            [tokenize(self.tokenizer, n.text) for n in used],
            [n.distance for n in used],
            self.vocab_size,
            st.temperature,
        )
        t_knn = time.perf_counter() - t

        windows = list(rolling_windows(tokens, self.prefix, cfg.max_length))
        self.model.eval()
        t = time.perf_counter()
        per_window = windows_token_logprobs(self.model, windows, cfg.eval_batch_size)
        t_eval = time.perf_counter() - t
        base = sum(float(x.sum().double()) for x in per_window)  # the rolling metric's own sum
        lp = torch.cat(per_window)
        if p_knn is None:  # no neighbour tokens: the method is the plain model
            by_alpha, coverage = [base] * len(st.alphas), 0.0
        else:
            targets = torch.tensor([t for w in windows for t in w.targets], dtype=torch.long)
            pk = p_knn[targets]
            by_alpha = [base if a == 0 else mixture_loglik(lp, pk, a) for a in st.alphas]
            coverage = float((pk > 0).double().mean())
        return {
            "doc_id": doc_id,
            "method": "interpolation",
            "n_bytes": count_bytes(text),
            "n_words": count_words(text),
            "n_tokens": len(tokens),
            "n_windows": len(windows),
            "k": cfg.k,
            "n_neighbors": len(used),
            "neighbors": [n.chunk_id for n in used],
            "distances": [n.distance if math.isfinite(n.distance) else None for n in used],
            "knn_coverage": coverage,
            "alphas": list(st.alphas),
            "loglik_by_alpha": by_alpha,
            "checkpoints": [0],
            "loglik": [base],
            "seconds": {"knn": t_knn, "eval": [t_eval]},
        }
