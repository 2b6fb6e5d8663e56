"""Dynamic evaluation baseline (split mode): the model trains on the first part of the test document itself
and is scored on the rest, with the same optimizer, learning rate and step budget as TTT-NN.

The document is split on the model's own tokens, as the authors did (``_split_text`` in their
eval_tttlm.py): the first ``min(max_tokens, half)`` tokens are trained on, the rest is decoded back to text
and scored (:func:`split_tokens`). TTT-NN's ``retrieve.query: split`` is another cut, on whitespace words
(the retrieval is shared by all models, so it cannot use one model's tokenizer); the methods table
therefore compares dynamic evaluation with its own no-TTT value on its rest. Per document the runner resets to the pretrained weights and a
fresh optimizer, then takes ``steps`` (default ``cfg.k``) optimizer steps of one ``max_length`` window of the
first part each, cycling over the first part's windows in order (the authors took 20 steps on copies of
the first half). Checkpoint ``n`` is the rest's rolling log-likelihood after ``n`` steps; checkpoint 0 is
the plain model on exactly the same tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from tttnn.core.metrics import count_bytes, count_words, rolling_windows
from tttnn.core.ttt import OnTTTRunner, document_seed
from tttnn.models.load import tokenize

__all__ = ["DynamicEvalRunner", "DynamicEvalSettings"]


class DynamicEvalSettings(BaseModel):
    """Settings of dynamic evaluation (optimizer, lr, max_length, checkpoints come from TTTConfig)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(1024, ge=1)  # cap on the first part, in the model's tokens (the authors: 1024)
    steps: int | None = Field(None, ge=0)  # optimizer steps; None: cfg.k, one per neighbour of TTT-NN


def split_tokens(tokenizer, text: str, max_tokens: int = 1024) -> tuple[str, str]:
    """(first part, rest) of ``text`` cut on the model's tokens: the first ``max_tokens`` when the document
    has at least twice that many, else the first half; both parts decoded back to text."""
    ids = tokenize(tokenizer, text)
    cut = max_tokens if len(ids) >= 2 * max_tokens else len(ids) // 2

    def decode(part: list[int]) -> str:
        return tokenizer.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    return decode(ids[:cut]), decode(ids[cut:])


class DynamicEvalRunner(OnTTTRunner):
    """Trains on each document's first part and scores its rest; ``run_batch`` plugs into resume.run_task."""

    settings_type = DynamicEvalSettings
    settings: DynamicEvalSettings

    def run_document(self, doc_id: str, text: str, neighbors: Sequence[Any] = ()) -> dict[str, Any]:
        """Rest's log-likelihood after 0..steps steps on the first part (at the configured checkpoints);
        the neighbours are not used."""
        r, cfg = self.runner, self.runner.cfg
        steps = cfg.k if self.settings.steps is None else self.settings.steps
        checkpoints = sorted({0, *(n for n in (cfg.eval_at if cfg.eval_at is not None else range(steps + 1)))})
        checkpoints = [n for n in checkpoints if n <= steps]
        first, rest = split_tokens(r.tokenizer, text, self.settings.max_tokens)
        tokens = tokenize(r.tokenizer, rest)
        if not tokens:
            raise ValueError(f"document {doc_id} has no tokens after the split")
        torch.manual_seed(document_seed(cfg.seed, doc_id))
        t0 = time.perf_counter()
        r.reset()
        wins = r.train_windows(first)
        rec: dict[str, Any] = {
            "doc_id": doc_id,
            "method": "dynamic_eval",
            "n_bytes": count_bytes(rest),
            "n_words": count_words(rest),
            "n_tokens": len(tokens),
            "n_windows": sum(1 for _ in rolling_windows(tokens, 0, cfg.max_length)),
            "query_bytes": count_bytes(first),
            "train_windows": len(wins),
            "train_tokens": sum(len(w) for w in wins),
            "steps": steps if wins else 0,
            "checkpoints": [],
            "loglik": [],
            "train_loss": [],
            "grad_norm": [],
            "skipped_steps": 0,
            "seconds": {"reset": time.perf_counter() - t0, "train": [], "eval": []},
        }

        def checkpoint(n: int) -> None:
            t = time.perf_counter()
            ll = r.evaluate(tokens)
            rec["checkpoints"].append(n)
            rec["loglik"].append(ll)
            rec["seconds"]["eval"].append(time.perf_counter() - t)

        checkpoint(0)
        for n in range(1, steps + 1):
            if wins:
                t = time.perf_counter()
                loss, gn, ok = r.train_step(wins[(n - 1) % len(wins)])
                rec["seconds"]["train"].append(time.perf_counter() - t)
                rec["train_loss"].append(loss if math.isfinite(loss) else None)
                rec["grad_norm"].append(gn if math.isfinite(gn) else None)
                rec["skipped_steps"] += 0 if ok else 1
                if n in checkpoints:
                    checkpoint(n)
            elif n in checkpoints:  # first part too short to train on: the model does not change
                rec["checkpoints"].append(n)
                rec["loglik"].append(rec["loglik"][-1])
                rec["seconds"]["eval"].append(0.0)
        return rec
