"""In-context retrieval baseline: the neighbours are placed in the model's context before each rolling
window of the document instead of being trained on; only the document's tokens are scored.

Layout of one model input: ``[nbr_j, sep, ..., nbr_2, sep, nbr_1, sep] + window.input_ids`` with the
nearest neighbour ``nbr_1`` adjacent to the document and farther ones further left. ``sep`` is the prefix
(end-of-text) token, the document separator of GPT-2-style pretraining; window 0 already starts with the
prefix token, so there the block's last ``sep`` is not repeated. The block holds at most ``budget`` tokens
(separators included): it is filled nearest-first, each neighbour keeping its *beginning*, and the
neighbours that no longer fit are dropped (farthest first). The scored windows are exactly
:func:`tttnn.core.metrics.rolling_windows`, so checkpoint 0 (no context) is the plain rolling metric.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from tttnn.core.metrics import Window, count_bytes, count_words, rolling_windows, windows_loglik
from tttnn.core.resume import PerDocument
from tttnn.core.settings import TTTConfig
from tttnn.models.load import config_positions, document_tokens, prefix_token_id, tokenize

__all__ = ["InContextRunner", "InContextSettings", "build_context", "max_positions"]


class InContextSettings(BaseModel):
    """Settings of the in-context baseline (k, max_length, eval batch and prefix come from TTTConfig)."""

    model_config = ConfigDict(extra="forbid")

    budget: int | None = Field(None, ge=0)  # neighbour tokens per window; None: all room the model has left
    separator: bool = True  # end each neighbour with the prefix token
    max_distance: float | None = None  # drop neighbours at this distance or farther (the authors: 2.3)


def max_positions(model: torch.nn.Module) -> int | None:
    """The longest input the model's position embeddings allow, or None when the config does not say."""
    return config_positions(getattr(model, "config", None))


def build_context(neighbor_tokens: Sequence[Sequence[int]], budget: int, sep: int | None) -> tuple[list[int], int]:
    """The neighbour block (nearest last) of at most ``budget`` tokens and how many neighbours it holds."""
    pieces: list[list[int]] = []
    room = budget
    for toks in neighbor_tokens:  # nearest first
        tail = [sep] if sep is not None else []
        if not toks:
            continue
        if room <= len(tail):  # not even one token of this neighbour fits: farther ones are dropped
            break
        piece = list(toks[: room - len(tail)]) + tail
        pieces.append(piece)
        room -= len(piece)
    block = [t for piece in reversed(pieces) for t in piece]
    return block, len(pieces)


class InContextRunner(PerDocument):
    """Scores each document with its neighbours in context; ``run_batch`` plugs into resume.run_task."""

    def __init__(
        self, model: torch.nn.Module, tokenizer, cfg: TTTConfig, settings: InContextSettings | None = None
    ) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.settings = settings or InContextSettings()
        self.prefix = prefix_token_id(tokenizer, cfg.prefix_token)
        limit = max_positions(model)
        budget = self.settings.budget
        if budget is None:
            if limit is None:
                raise ValueError("the model's config gives no maximum length: set incontext.budget explicitly")
            budget = limit - cfg.max_length
        if budget <= 0 and self.settings.budget is None:
            raise ValueError(
                f"no room for neighbours: max_length {cfg.max_length} already fills the model's {limit} positions; "
                "use a smaller max_length for the in-context baseline"
            )
        if limit is not None and budget + cfg.max_length > limit:
            raise ValueError(
                f"budget {budget} + max_length {cfg.max_length} = {budget + cfg.max_length} exceeds the model's "
                f"{limit} positions"
            )
        self.budget = budget

    def run_document(self, doc_id: str, text: str, neighbors: Sequence[Any]) -> dict[str, Any]:
        """Rolling log-likelihood without (checkpoint 0) and with the neighbours in context (checkpoint k)."""
        cfg, st = self.cfg, self.settings
        tokens = document_tokens(self.tokenizer, doc_id, text)
        offered = list(neighbors[: cfg.k])
        used = [
            n
            for n in offered
            if st.max_distance is None or not math.isfinite(n.distance) or n.distance < st.max_distance
        ]
        t = time.perf_counter()
        nbr_tokens = [tokenize(self.tokenizer, n.text) for n in used]
        block, n_in = build_context(nbr_tokens, self.budget, self.prefix if st.separator else None)
        t_tok = time.perf_counter() - t

        plain = list(rolling_windows(tokens, self.prefix, cfg.max_length))
        ctx_windows, ctx_tokens = [], []
        for i, w in enumerate(plain):
            b = block[:-1] if (i == 0 and st.separator and block and w.input_ids[0] == self.prefix) else block
            ctx_windows.append(Window([*b, *w.input_ids], w.targets))
            ctx_tokens.append(len(b))

        self.model.eval()
        t = time.perf_counter()
        base = windows_loglik(self.model, plain, cfg.eval_batch_size)
        t_base = time.perf_counter() - t
        t = time.perf_counter()
        with_ctx = windows_loglik(self.model, ctx_windows, cfg.eval_batch_size) if block else base
        t_ctx = time.perf_counter() - t
        rec: dict[str, Any] = {
            "doc_id": doc_id,
            "method": "incontext",
            "n_bytes": count_bytes(text),
            "n_words": count_words(text),
            "n_tokens": len(tokens),
            "n_windows": len(plain),
            "n_neighbors": len(offered),
            "neighbors": [n.chunk_id for n in offered],
            "distances": [n.distance if math.isfinite(n.distance) else None for n in offered],
            "n_context_neighbors": n_in,
            "budget": self.budget,
            "context_tokens": ctx_tokens,
            "checkpoints": [0] + ([cfg.k] if cfg.k > 0 else []),
            "loglik": [base] + ([with_ctx] if cfg.k > 0 else []),
            "seconds": {"tokenize": t_tok, "eval": [t_base, t_ctx]},
        }
        return rec
