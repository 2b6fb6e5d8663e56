"""Batched TTT across documents: B test documents advance in lock-step, each with its own copy of the weights
and its own AdamW state, so one forward/backward serves B documents and the GPU is no longer idle.

The copies are stacked along a leading dimension and the unchanged Hugging Face model runs on every copy
through ``torch.func.functional_call`` under ``torch.vmap``; vmap turns each layer's matmul into a batched
matmul over the copies, so any causal LM works without model-specific code. Ragged windows are right-padded:
in a causal LM a position never sees later ones, and padded positions are excluded from the loss and the
log-likelihood, so padding changes nothing. AdamW, gradient clipping and non-finite-step skipping are
applied per copy with the same formulas as ``torch.optim.AdamW`` and ``clip_grad_norm_``; a skipped copy's
weights, moments and step count stay exactly as they were. Results equal the batch-1 loop's
(:class:`tttnn.ttt.TTTRunner`) up to float rounding, for models without dropout: with dropout in train mode
(gpt2), each copy draws its own masks from one shared stream, so results equal it in distribution only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .metrics import rolling_windows
from .models import tokenize
from .resume import Document
from .settings import TTTConfig
from .ttt import TTTRunner, _sync, document_seed

__all__ = ["BatchedTTTRunner"]

log = logging.getLogger(__name__)

IGNORE = -100


def _per_copy(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a per-copy vector ``[S]`` so that it broadcasts against a stacked ``[S, ...]`` tensor."""
    return x.view(-1, *([1] * (ndim - 1)))


class BatchedTTTRunner(TTTRunner):
    """Runs TTT on up to ``batch_size`` documents at once; ``run_batch`` returns the same records as
    :meth:`TTTRunner.run_document`, in order (``seconds`` hold the batch's times divided among its documents)."""

    def __init__(self, model: torch.nn.Module, tokenizer, cfg: TTTConfig, batch_size: int | None = None) -> None:
        super().__init__(model, tokenizer, cfg)
        self.batch_size = int(batch_size if batch_size is not None else cfg.batch_documents)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not cfg.reset_optimizer and self.batch_size > 1:
            raise ValueError(
                "ttt.reset_optimizer: false carries the optimizer state from one document to the next, "
                "which documents trained side by side cannot do: use ttt.batch_documents: 1"
            )
        self.weights: dict[str, torch.Tensor] = {}  # stacked copies the forward pass uses (requires grad)
        self.masters: dict[str, torch.Tensor] = {}  # float32 copies AdamW updates (the weights themselves in fp32)
        self.exp_avg: dict[str, torch.Tensor] = {}
        self.exp_avg_sq: dict[str, torch.Tensor] = {}
        self.steps: list[int] = []
        self._loss_fn = self.precision.maybe_compile(torch.vmap(self._copy_loss, randomness="different"))
        self._eval_fn = self.precision.maybe_compile(torch.vmap(self._copy_loglik, randomness="different"))

    # -- stacked state ---------------------------------------------------------------------------------------
    def reset_copies(self, n: int) -> None:
        """``n`` copies of the pristine weights, each with zero AdamW moments and step count 0."""
        for name in self.param_names:
            base = self.pristine[name].to(self.device, torch.float32)
            master = base.unsqueeze(0).repeat(n, *([1] * base.dim()))
            self.masters[name] = master
            self.exp_avg[name] = torch.zeros_like(master)
            self.exp_avg_sq[name] = torch.zeros_like(master)
            w = master.to(self.precision.weight_dtype) if self.precision.master else master
            self.weights[name] = w.requires_grad_(True)
        self.steps = [0] * n

    @torch.no_grad()
    def keep_copies(self, keep: Sequence[int]) -> None:
        """Drop every copy not in ``keep`` (documents that ran out of neighbours), in that order."""
        if list(keep) == list(range(len(self.steps))):
            return
        idx = torch.tensor(list(keep), device=self.device, dtype=torch.long)
        for name in self.param_names:
            self.masters[name] = self.masters[name].index_select(0, idx)
            self.exp_avg[name] = self.exp_avg[name].index_select(0, idx)
            self.exp_avg_sq[name] = self.exp_avg_sq[name].index_select(0, idx)
            if self.precision.master:
                self.weights[name] = self.weights[name].index_select(0, idx).requires_grad_(True)
            else:
                self.weights[name] = self.masters[name].requires_grad_(True)
        self.steps = [self.steps[i] for i in keep]

    # -- one copy (vmapped over the copies) ------------------------------------------------------------------
    def _copy_loss(self, params: dict[str, torch.Tensor], ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean next-token loss of one copy on one right-padded window (labels already shifted, -100 = none)."""
        logits = functional_call(self.model, params, (ids[None],), {"use_cache": False}).logits[0]
        n = (labels != IGNORE).sum().clamp(min=1)
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum") / n

    def _copy_loglik(
        self, params: dict[str, torch.Tensor], ids: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Per-window sums of target log-probabilities of one copy on right-padded windows ``[w, L]``."""
        logits = functional_call(self.model, params, (ids,), {"use_cache": False}).logits
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        return torch.where(mask, logp, torch.zeros_like(logp)).sum(-1)

    # -- batched steps ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_copies(self, docs_windows: Sequence[Sequence[Any]]) -> list[float]:
        """Rolling log-likelihood of each copy's document (``docs_windows[s]``: its :class:`Window` list)."""
        self.model.eval()
        S = len(docs_windows)
        per_copy = max(1, self.cfg.eval_batch_size // S)  # rows per forward: max(eval_batch_size, S)
        totals = [0.0] * S
        n_win = max(len(w) for w in docs_windows)
        for start in range(0, n_win, per_copy):
            chunk = [list(w[start : start + per_copy]) for w in docs_windows]
            w = max(len(c) for c in chunk)
            L = max(len(x.input_ids) for c in chunk for x in c)
            ids = torch.zeros(S, w, L, dtype=torch.long)
            tgt = torch.zeros(S, w, L, dtype=torch.long)
            mask = torch.zeros(S, w, L, dtype=torch.bool)
            for s, c in enumerate(chunk):
                for r, win in enumerate(c):
                    n, m = len(win.input_ids), len(win.targets)
                    ids[s, r, :n] = torch.tensor(win.input_ids)
                    tgt[s, r, n - m : n] = torch.tensor(win.targets)
                    mask[s, r, n - m : n] = True
            with self.precision.autocast():
                sums = self._eval_fn(self.weights, ids.to(self.device), tgt.to(self.device), mask.to(self.device))
            sums = sums.double().cpu()
            for s, c in enumerate(chunk):
                for r in range(len(c)):
                    totals[s] += float(sums[s, r])
        return totals

    def train_copies(self, windows: Sequence[list[int] | None]) -> tuple[list[float], list[float], list[bool]]:
        """One AdamW step per copy on its window (``None``: the copy sits this step out, unchanged).

        Returns per copy (loss, gradient norm before clipping, applied), as :meth:`TTTRunner.train_step`.
        """
        S = len(windows)
        T = max(len(w) for w in windows if w is not None)
        ids = torch.zeros(S, T, dtype=torch.long)
        labels = torch.full((S, T), IGNORE, dtype=torch.long)
        for s, w in enumerate(windows):
            if w is not None:
                ids[s, : len(w)] = torch.tensor(w)
                labels[s, : len(w) - 1] = torch.tensor(w[1:])
        active = torch.tensor([w is not None for w in windows], device=self.device)
        self.model.train()
        with self.precision.autocast():
            losses = self._loss_fn(self.weights, ids.to(self.device), labels.to(self.device))
        params = [self.weights[n] for n in self.param_names]
        grads = [g.float() for g in torch.autograd.grad(losses.sum(), params)]
        loss = losses.detach().float()
        # per-copy clip_grad_norm_: the 2-norm of the per-parameter 2-norms
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(S, -1), dim=1) for g in grads])
        total = torch.linalg.vector_norm(norms, dim=0)
        clip = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        coef = torch.clamp(clip / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(_per_copy(coef, g.dim()))
        finite_loss = torch.isfinite(loss)
        applied = active & finite_loss & torch.isfinite(total)
        gnorm = torch.where(finite_loss, total, torch.full_like(total, math.nan))
        applied_l = applied.tolist()
        for s, (w, ok) in enumerate(zip(windows, applied_l)):
            if w is not None and not ok:
                log.warning("copy %d: non-finite loss or gradient norm: step skipped", s)
        self._adamw(grads, applied_l)
        return loss.tolist(), gnorm.tolist(), applied_l

    @torch.no_grad()
    def _adamw(self, grads: list[torch.Tensor], applied: list[bool]) -> None:
        """``torch.optim.AdamW``'s update on every applied copy; the others keep weights, moments and step."""
        cfg = self.cfg
        beta1, beta2 = cfg.betas
        for s, ok in enumerate(applied):
            self.steps[s] += 1 if ok else 0
        groups: dict[int, list[int]] = {}
        for s, ok in enumerate(applied):
            if ok:
                groups.setdefault(self.steps[s], []).append(s)
        S = len(applied)
        for step, members in groups.items():
            bc1, bc2 = 1 - beta1**step, 1 - beta2**step
            step_size, bc2_sqrt = cfg.lr / bc1, bc2**0.5
            whole = len(members) == S
            sel = None if whole else torch.zeros(S, dtype=torch.bool, device=self.device)
            if sel is not None:
                sel[members] = True
            for name, g in zip(self.param_names, grads):
                p, m, v = self.masters[name], self.exp_avg[name], self.exp_avg_sq[name]
                if whole:  # in place, exactly torch's single-tensor AdamW
                    p.mul_(1 - cfg.lr * cfg.weight_decay)
                    m.lerp_(g, 1 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    p.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(cfg.eps), value=-step_size)
                else:  # same arithmetic out of place, kept only where selected (NaN grads elsewhere are dropped)
                    keep = _per_copy(sel, p.dim())
                    g = torch.where(keep, g, torch.zeros_like(g))
                    p2 = p.mul(1 - cfg.lr * cfg.weight_decay)
                    m2 = m.lerp(g, 1 - beta1)
                    v2 = v.mul(beta2).addcmul_(g, g, value=1 - beta2)
                    p2.addcdiv_(m2, (v2.sqrt() / bc2_sqrt).add_(cfg.eps), value=-step_size)
                    p.copy_(torch.where(keep, p2, p))
                    m.copy_(torch.where(keep, m2, m))
                    v.copy_(torch.where(keep, v2, v))
        if self.precision.master and groups:
            for name in self.param_names:
                self.weights[name].copy_(self.masters[name])

    # -- documents -------------------------------------------------------------------------------------------
    def run_batch(self, docs: Sequence[Document]) -> list[dict[str, Any]]:
        """TTT on ``docs`` (at most ``batch_size`` at a time) in lock-step; one record per document, in order."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(docs), self.batch_size):
            out.extend(self._run_group(docs[i : i + self.batch_size]))
        return out

    def _run_group(self, docs: Sequence[Document]) -> list[dict[str, Any]]:
        cfg, dev = self.cfg, self.device
        torch.manual_seed(document_seed(cfg.seed, "\0".join(d.doc_id for d in docs)))
        tokens = [tokenize(self.tokenizer, d.text) for d in docs]
        for d, t in zip(docs, tokens):
            if not t:
                raise ValueError(f"document {d.doc_id} has no tokens")
        evals = [list(rolling_windows(t, self.prefix, cfg.max_length)) for t in tokens]
        recs = [self.new_record(d.doc_id, d.text, t, d.neighbors) for d, t in zip(docs, tokens)]
        n_nb = [min(len(d.neighbors), cfg.k) for d in docs]
        checkpoints = set(cfg.checkpoints())
        _sync(dev)
        t0 = time.perf_counter()
        self.reset_copies(len(docs))
        _sync(dev)
        reset_s = (time.perf_counter() - t0) / len(docs)
        for r in recs:
            r["seconds"]["reset"] = reset_s
        alive = list(range(len(docs)))  # alive[s]: the document held by copy s

        def checkpoint(n: int) -> None:
            t = time.perf_counter()
            lls = self.evaluate_copies([evals[i] for i in alive])
            _sync(dev)
            dt = (time.perf_counter() - t) / len(alive)
            for i, ll in zip(alive, lls):
                recs[i]["checkpoints"].append(n)
                recs[i]["loglik"].append(ll)
                recs[i]["seconds"]["eval"].append(dt)

        checkpoint(0)
        for n in range(1, cfg.k + 1):
            keep = [s for s, i in enumerate(alive) if n_nb[i] >= n]
            if not keep:
                break
            self.keep_copies(keep)
            alive = [alive[s] for s in keep]
            t = time.perf_counter()
            wins = [self.train_windows(docs[i].neighbors[n - 1].text) for i in alive]
            losses: list[list[float]] = [[] for _ in alive]
            norms: list[list[float]] = [[] for _ in alive]
            for j in range(max(len(w) for w in wins)):
                step = [w[j] if j < len(w) else None for w in wins]
                lo, gn, ok = self.train_copies(step)
                for s, i in enumerate(alive):
                    if step[s] is not None:
                        losses[s].append(lo[s])
                        norms[s].append(gn[s])
                        recs[i]["skipped_steps"] += 0 if ok[s] else 1
            _sync(dev)
            dt = (time.perf_counter() - t) / len(alive)
            for s, i in enumerate(alive):
                recs[i]["seconds"]["train"].append(dt)
                recs[i]["train_loss"].append(losses[s])
                recs[i]["grad_norm"].append(norms[s])
                recs[i]["train_tokens"].append(sum(len(w) for w in wins[s]))
            if n in checkpoints:
                checkpoint(n)
        for i, r in enumerate(recs):  # documents with fewer than k neighbours: the model no longer changed
            for n in range(n_nb[i] + 1, cfg.k + 1):
                if n in checkpoints:
                    self.repeat_checkpoint(r, n)
        self.reset_copies(0)  # free the copies between batches
        return [self.finish_record(r) for r in recs]
