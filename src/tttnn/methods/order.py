"""Neighbour-order ablations of TTT-NN, sharing :class:`tttnn.core.ttt.TTTRunner` (same optimizer, lr, windows).

``nearest``: the method itself (:meth:`TTTRunner.run_document`). ``farthest``: the same first ``k``
neighbours trained in reverse order (farthest first), same steps and checkpoints. ``batch``: all windows of
the ``k`` neighbours, shuffled with the document seed, taken as one epoch of minibatches of ``batch_size``
windows (right-padded and masked; loss = mean over the batch's real target tokens). The tokens trained on
are exactly TTT-NN's, but there are only ``ceil(W / batch_size)`` optimizer updates instead of ``W`` (``W`` =
number of windows of the ``k`` neighbours) at the same learning rate, so the model moves less: this is the
paper's "one batch of steps" ablation, not a tuned large-batch run.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from tttnn.core.metrics import count_bytes, count_words, rolling_windows
from tttnn.core.ttt import OnTTTRunner, document_seed
from tttnn.models.load import tokenize

__all__ = ["OrderRunner", "OrderSettings", "batch_loss"]


class OrderSettings(BaseModel):
    """Which ordering to run; ``batch_size`` and ``shuffle`` apply to ``batch`` only."""

    model_config = ConfigDict(extra="forbid")

    order: Literal["nearest", "farthest", "batch"] = "farthest"
    batch_size: int = Field(8, ge=1)
    shuffle: bool = True


def batch_loss(model: torch.nn.Module, windows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Mean next-token loss over the real tokens of right-padded ``windows``, and that token count."""
    device = next(model.parameters()).device
    n = max(len(w) for w in windows)
    ids = torch.full((len(windows), n), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(windows), n), dtype=torch.long, device=device)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = torch.tensor(list(w), device=device)
        mask[i, : len(w)] = 1
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    count = int((labels != -100).sum())
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum")
    return loss / max(count, 1), count


class OrderRunner(OnTTTRunner):
    """Runs one neighbour ordering per document; ``run_batch`` plugs into resume.run_task."""

    settings_type = OrderSettings
    settings: OrderSettings

    def run_document(self, doc_id: str, text: str, neighbors: Sequence[Any]) -> dict[str, Any]:
        """The record of one document under the configured ordering (checkpoints count neighbours)."""
        order = self.settings.order
        used = list(neighbors[: self.runner.cfg.k])
        if order == "batch":
            rec = self._run_batched(doc_id, text, used)
        else:
            rec = self.runner.run_document(doc_id, text, used[::-1] if order == "farthest" else used)
        rec["order"] = order
        return rec

    def _step(self, windows: list[list[int]]) -> tuple[float, float, bool]:
        """One optimizer step on a minibatch, through TTTRunner's step (same precision, clipping, skipping)."""
        r = self.runner
        if len(windows) == 1:
            return r.train_step(windows[0])
        return r.step_on(lambda model: batch_loss(model, windows, r.prefix)[0])

    def _run_batched(self, doc_id: str, text: str, used: list[Any]) -> dict[str, Any]:
        """All neighbours' windows as one shuffled epoch of minibatches, evaluated as neighbours complete."""
        r, cfg, bs = self.runner, self.runner.cfg, self.settings.batch_size
        seed = document_seed(cfg.seed, doc_id)
        torch.manual_seed(seed)
        tokens = tokenize(r.tokenizer, text)
        if not tokens:
            raise ValueError(f"document {doc_id} has no tokens")
        t0 = time.perf_counter()
        r.reset()
        per_nbr = [r.train_windows(n.text) for n in used]
        items = [(i, w) for i, wins in enumerate(per_nbr) for w in wins]
        if self.settings.shuffle:
            random.Random(seed).shuffle(items)
        left = [len(w) for w in per_nbr]
        wanted = cfg.checkpoints()
        rec: dict[str, Any] = {
            "doc_id": doc_id,
            "n_bytes": count_bytes(text),
            "n_words": count_words(text),
            "n_tokens": len(tokens),
            "n_windows": sum(1 for _ in rolling_windows(tokens, 0, cfg.max_length)),
            "n_neighbors": len(used),
            "neighbors": [n.chunk_id for n in used],
            "distances": [n.distance if math.isfinite(n.distance) else None for n in used],
            "batch_size": bs,
            "train_windows": len(items),
            "train_tokens": sum(len(w) for _, w in items),
            "checkpoints": [],
            "loglik": [],
            "updates": [],
            "batch_windows": [],
            "train_loss": [],
            "grad_norm": [],
            "skipped_steps": 0,
            "seconds": {"reset": time.perf_counter() - t0, "train": [], "eval": []},
        }

        def checkpoint(n: int, updates: int) -> None:
            t = time.perf_counter()
            rec["loglik"].append(r.evaluate(tokens))
            rec["checkpoints"].append(n)
            rec["updates"].append(updates)
            rec["seconds"]["eval"].append(time.perf_counter() - t)

        checkpoint(0, 0)
        done = 0  # neighbours all of whose windows were trained on (window-less ones count once training began)
        steps = math.ceil(len(items) / bs)
        for s in range(steps):
            batch = items[s * bs : (s + 1) * bs]
            t = time.perf_counter()
            loss, gn, ok = self._step([w for _, w in batch])
            rec["seconds"]["train"].append(time.perf_counter() - t)
            rec["batch_windows"].append(len(batch))
            rec["train_loss"].append(loss if math.isfinite(loss) else None)
            rec["grad_norm"].append(gn if math.isfinite(gn) else None)
            rec["skipped_steps"] += 0 if ok else 1
            for i, _ in batch:
                left[i] -= 1
            n = sum(1 for x in left if x == 0)
            if s == steps - 1 or any(done < c <= n for c in wanted):
                checkpoint(n, s + 1)
            done = n
        if not items and used:  # nothing to train on: the model is the plain one after all neighbours
            rec["checkpoints"].append(len(used))
            rec["loglik"].append(rec["loglik"][0])
            rec["updates"].append(0)
            rec["seconds"]["eval"].append(0.0)
        # only checkpoints that were measured: neighbours completed inside one minibatch have none, and a
        # document with fewer neighbours than k stops at its last (the tables carry it forward, as for TTT-NN)
        return rec
