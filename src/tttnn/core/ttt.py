"""The TTT-NN loop: per test document, reset to the pretrained weights, then one optimizer step per
neighbour window, evaluating the document's rolling bits per byte at the configured checkpoints."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel

from tttnn.core import resume
from tttnn.core.metrics import count_bytes, count_words, document_loglik, rolling_windows
from tttnn.core.precision import setup_precision
from tttnn.core.resume import Document, PerDocument
from tttnn.core.settings import TTTConfig
from tttnn.models.load import document_tokens, prefix_token_id, tokenize

__all__ = ["Document", "Neighbor", "TTTConfig", "TTTRunner", "OnTTTRunner", "document_seed", "run_task"]

log = logging.getLogger(__name__)

# characters per token that a neighbour's text is cut at before tokenizing, when windows are capped (generous:
# English runs ~4, code ~3; a longer stretch of one token is re-tokenized in full, never cut short)
MAX_CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class Neighbor:
    """One retrieved training text, in distance order."""

    chunk_id: str
    text: str
    distance: float = float("nan")


def document_seed(seed: int, doc_id: str) -> int:
    """A per-document seed, so results do not depend on which documents ran before (resume-safe)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "little") & (2**63 - 1)


class Progress:
    """Log lines within one document (neighbours and windows done, seconds per window), at most one every
    ``EVERY`` seconds: an hours-long document is visibly moving in the job's log."""

    EVERY = 30.0  # seconds between lines

    def __init__(self, doc_id: str, k: int) -> None:
        self.doc_id, self.k, self.every = doc_id, k, self.EVERY
        self.t0 = self.last = time.perf_counter()
        self.windows = 0

    def step(self, neighbor: int, window: int, n_windows: int) -> None:
        """One training window done (``window`` of ``n_windows`` of neighbour ``neighbor``)."""
        self.windows += 1
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            log.info(
                "document %s: neighbour %d/%d, window %d/%d; %d windows in %.0f s (%.2f s per window)",
                self.doc_id, neighbor, self.k, window, n_windows, self.windows, now - self.t0,
                (now - self.t0) / self.windows,
            )

    def evaluating(self, n: int, n_windows: int) -> None:
        """An evaluation at checkpoint ``n`` starts (a long document's takes minutes)."""
        if time.perf_counter() - self.t0 >= self.every or n_windows > 64:
            log.info("document %s: evaluating after %d neighbours (%d windows)", self.doc_id, n, n_windows)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TTTRunner:
    """Holds a model, its pristine weights and the optimizer; runs TTT on one document at a time."""

    def __init__(self, model: torch.nn.Module, tokenizer, cfg: TTTConfig) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.device = next(model.parameters()).device
        self.prefix = prefix_token_id(tokenizer, cfg.prefix_token)
        self.precision = setup_precision(cfg, self.device)
        # a model that never trains (k = 0: evaluation only) needs no copy of its weights (7 GB for Qwen 1.5B)
        self.pristine = {k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.k > 0 else {}
        if self.precision.master:  # bf16 weights in the model, float32 master copy in the optimizer
            model.to(self.precision.weight_dtype)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.master: list[torch.Tensor] | None = None
        if self.precision.master and self.pristine:
            self.master = [self.pristine[n].float().clone() for n in self.param_names]
        self.forward_model = self.precision.maybe_compile(model)
        self.optimizer: torch.optim.Optimizer | None = None

    def restore_weights(self) -> None:
        """Copy the pristine weights back in place (no reload from disk)."""
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                if k in self.pristine:
                    v.copy_(self.pristine[k])
            for n, m in zip(self.param_names, self.master or []):
                m.copy_(self.pristine[n])

    def reset(self) -> None:
        """Pristine weights; a fresh optimizer unless ``reset_optimizer`` is off (the authors' code)."""
        self.restore_weights()
        if self.optimizer is None or self.cfg.reset_optimizer:
            self.optimizer = torch.optim.AdamW(
                self.master if self.master is not None else self.params,
                lr=self.cfg.lr,
                betas=self.cfg.betas,
                eps=self.cfg.eps,
                weight_decay=self.cfg.weight_decay,
                # one fused kernel instead of a loop over tensors: the update 3x faster on CPU (measured)
                fused=True,
            )

    def evaluate(self, tokens: Sequence[int]) -> float:
        """Rolling log-likelihood of the document under the current weights (eval mode)."""
        self.model.eval()
        with self.precision.autocast():
            return document_loglik(
                self.forward_model, tokens, self.prefix, self.cfg.max_length, self.cfg.eval_batch_size
            )

    def train_windows(self, text: str) -> list[list[int]]:
        """The neighbour's token windows (disjoint, ``max_length`` each, capped in number).

        With a cap, only the beginning of a long text is tokenized (a multi-MB Pile document would cost
        seconds of tokenizer time for a few windows): cut at a whitespace after ``MAX_CHARS_PER_TOKEN``
        characters per token needed; if that yields too few tokens the whole text is tokenized after all.
        """
        L = self.cfg.max_length
        cap = self.cfg.max_windows_per_neighbor
        ids = None
        if cap and len(text) > cap * L * MAX_CHARS_PER_TOKEN:
            end = text.find(" ", cap * L * MAX_CHARS_PER_TOKEN)
            if end > 0:
                head = tokenize(self.tokenizer, text[:end])
                if len(head) > cap * L + 1:  # tokens past the last (cut) word decide nothing used
                    ids = head
        if ids is None:
            ids = tokenize(self.tokenizer, text)
        wins = [ids[i : i + L] for i in range(0, len(ids), L)]
        wins = [w for w in wins if len(w) >= 2]
        return wins[:cap] if cap else wins

    def train_step(self, window: list[int]) -> tuple[float, float, bool]:
        """One optimizer step on one window; returns (loss, grad norm, applied). Non-finite: skipped."""
        ids = torch.tensor([window], device=self.device)
        return self.step_on(lambda model: model(input_ids=ids, labels=ids).loss)

    def step_on(self, loss_fn: Callable[[torch.nn.Module], torch.Tensor]) -> tuple[float, float, bool]:
        """One optimizer step on the loss ``loss_fn(model)`` in this runner's precision (autocast, or bf16
        weights with the float32 master that the optimizer updates); every method's steps go through here.
        Returns (loss, grad norm, applied); a non-finite loss or gradient norm skips the step."""
        assert self.optimizer is not None
        self.model.train()
        with self.precision.autocast():
            loss = loss_fn(self.forward_model)
        if not torch.isfinite(loss):
            log.warning("non-finite training loss %s: step skipped", float(loss.detach()))
            self._zero_grad()
            return float(loss.detach()), float("nan"), False
        loss.backward()
        opt_params = self.params
        if self.master is not None:
            for m, p in zip(self.master, self.params):
                m.grad = p.grad.float() if p.grad is not None else None
                p.grad = None
            opt_params = self.master
        clip = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        gnorm = torch.nn.utils.clip_grad_norm_(opt_params, clip)
        if not torch.isfinite(gnorm):
            log.warning("non-finite gradient norm: step skipped")
            self._zero_grad()
            return float(loss.detach()), float(gnorm), False
        self.optimizer.step()
        if self.master is not None:
            with torch.no_grad():
                for m, p in zip(self.master, self.params):
                    p.copy_(m)
        self._zero_grad()
        return float(loss.detach()), float(gnorm), True

    def _zero_grad(self) -> None:
        """Drop the gradients of the model and of the master copy."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.params:
            p.grad = None

    def run_batch(self, docs: Sequence[Document]) -> list[dict[str, Any]]:
        """TTT on each document in turn (the batch-1 loop; :mod:`tttnn.core.batched` advances many at once)."""
        return [self.run_document(d.doc_id, d.text, d.neighbors) for d in docs]

    def run_document(self, doc_id: str, text: str, neighbors: Sequence[Neighbor]) -> dict[str, Any]:
        """TTT on one document; returns its result record (log-likelihoods at every checkpoint)."""
        cfg, dev = self.cfg, self.device
        torch.manual_seed(document_seed(cfg.seed, doc_id))
        tokens = document_tokens(self.tokenizer, doc_id, text)
        sync(dev)
        t0 = time.perf_counter()
        self.reset()
        sync(dev)
        rec = self.new_record(doc_id, text, tokens, neighbors)
        rec["seconds"]["reset"] = time.perf_counter() - t0
        checkpoints = self.cfg.checkpoints()

        progress = Progress(doc_id, cfg.k)
        n_eval_windows = rec["n_windows"]

        def checkpoint(n: int) -> None:
            progress.evaluating(n, n_eval_windows)
            t = time.perf_counter()
            ll = self.evaluate(tokens)
            sync(dev)
            rec["checkpoints"].append(n)
            rec["loglik"].append(ll)
            rec["seconds"]["eval"].append(time.perf_counter() - t)

        checkpoint(0)
        for n in range(1, cfg.k + 1):
            if n <= len(neighbors):
                t = time.perf_counter()
                wins = self.train_windows(neighbors[n - 1].text)  # timed apart: the cost figure is training
                rec["seconds"]["tokenize"].append(time.perf_counter() - t)
                losses, norms, t = [], [], time.perf_counter()
                for j, w in enumerate(wins, 1):
                    loss, gn, ok = self.train_step(w)
                    progress.step(n, j, len(wins))
                    losses.append(loss)
                    norms.append(gn)
                    rec["skipped_steps"] += 0 if ok else 1
                sync(dev)
                rec["seconds"]["train"].append(time.perf_counter() - t)
                rec["train_loss"].append(losses)
                rec["grad_norm"].append(norms)
                rec["train_tokens"].append(sum(len(w) for w in wins))
                if n in checkpoints:
                    checkpoint(n)
            elif n in checkpoints:  # fewer neighbours than k: the model no longer changes
                self.repeat_checkpoint(rec, n)
        return self.finish_record(rec)

    def new_record(
        self, doc_id: str, text: str, tokens: Sequence[int], neighbors: Sequence[Neighbor]
    ) -> dict[str, Any]:
        """A document's result record before any checkpoint (shared with the batched runner)."""
        cfg = self.cfg
        return {
            "doc_id": doc_id,
            "n_bytes": count_bytes(text),
            "n_words": count_words(text),
            "n_tokens": len(tokens),
            "n_windows": sum(1 for _ in rolling_windows(tokens, 0, cfg.max_length)),
            "n_neighbors": min(len(neighbors), cfg.k),
            "neighbors": [n.chunk_id for n in neighbors[: cfg.k]],
            "distances": [n.distance for n in neighbors[: cfg.k]],
            "checkpoints": [],
            "loglik": [],
            "train_loss": [],
            "grad_norm": [],
            "skipped_steps": 0,
            "train_tokens": [],
            "seconds": {"reset": 0.0, "train": [], "eval": [], "tokenize": []},
        }

    @staticmethod
    def repeat_checkpoint(rec: dict[str, Any], n: int) -> None:
        """Checkpoint ``n`` after the document ran out of neighbours: the model no longer changes."""
        rec["checkpoints"].append(n)
        rec["loglik"].append(rec["loglik"][-1])
        rec["seconds"]["eval"].append(0.0)

    def finish_record(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Drop checkpoints past the neighbours trained on (unless ``pad_checkpoints``: the summary carries the
        last value forward itself); replace NaN by null, which json holds portably. A non-finite log-likelihood
        before any training is an error: the pretrained model itself is broken, and no result would mean anything."""
        if rec["checkpoints"][:1] == [0] and not math.isfinite(rec["loglik"][0]):
            name = getattr(getattr(self.model, "config", None), "_name_or_path", "") or type(self.model).__name__
            raise ValueError(
                f"model {name}: log-likelihood {rec['loglik'][0]} on document {rec['doc_id']} before any training; "
                "its weights are damaged or it overflows in this dtype (delete its prepared folder to prepare it again)"
            )
        if not self.cfg.pad_checkpoints:
            keep = [i for i, n in enumerate(rec["checkpoints"]) if n <= rec["n_neighbors"]]
            rec["checkpoints"] = [rec["checkpoints"][i] for i in keep]
            rec["loglik"] = [rec["loglik"][i] for i in keep]
            rec["seconds"]["eval"] = [rec["seconds"]["eval"][i] for i in keep]
        rec["train_loss"] = [[x if math.isfinite(x) else None for x in r] for r in rec["train_loss"]]
        rec["grad_norm"] = [[x if math.isfinite(x) else None for x in r] for r in rec["grad_norm"]]
        rec["distances"] = [d if math.isfinite(d) else None for d in rec["distances"]]
        return rec


class OnTTTRunner(PerDocument):
    """Base of the methods built on TTT (dynamic evaluation, neighbour order): they share one
    :class:`TTTRunner` (same model, optimizer, windows) and leave the model pretrained after every batch.
    Subclasses set ``settings_type`` and define ``run_document(doc_id, text, neighbors)``."""

    settings_type: type[BaseModel]

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        cfg: TTTConfig,
        settings: BaseModel | None = None,
        *,
        runner: TTTRunner | None = None,
    ) -> None:
        self.runner = runner if runner is not None else TTTRunner(model, tokenizer, cfg)
        if self.runner.model is not model or self.runner.cfg != cfg:
            raise ValueError("the TTTRunner given must hold the same model and TTTConfig")
        self.settings = settings or self.settings_type()

    def run_batch(self, docs: Sequence[Document]) -> list[dict[str, Any]]:
        """One record per document, in order; the model is left at the pretrained weights."""
        try:
            return super().run_batch(docs)
        finally:
            self.runner.restore_weights()


def run_task(
    documents: Iterable[Document],
    out_path: str | os.PathLike,
    runner: TTTRunner,
    prov: dict[str, Any] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """TTT on every document of a task, resumable: :func:`tttnn.core.resume.run_task` (same arguments, the runner
    in place of its ``process``), warning where a resumed run cannot equal an uninterrupted one, and the runner's
    weights restored afterwards."""
    warning = None
    if not runner.cfg.reset_optimizer:
        warning = (
            "reset_optimizer is off: the optimizer state of the killed run is not restored, "
            "so the remaining documents differ from an uninterrupted run"
        )
    try:
        return resume.run_task(documents, out_path, runner.run_batch, prov, resume_warning=warning, **kwargs)
    finally:
        runner.restore_weights()  # never hand back a model trained on the last document
