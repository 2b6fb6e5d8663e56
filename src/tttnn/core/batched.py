"""Batched TTT across documents: B test documents advance in lock-step, each with its own copy of the weights
and its own AdamW state, so one forward/backward serves B documents and the GPU is no longer idle.

The copies are stacked along a leading dimension and the unchanged Hugging Face model runs on every copy
through ``torch.func.functional_call`` under ``torch.vmap``; vmap turns each layer's matmul into a batched
matmul over the copies, so any causal LM works without model-specific code. Attention inside the batched
forward is switched to one whose forward and backward vmap batches (:data:`BATCHED_ATTENTION`): SDPA's
fused kernels have no batching rule and would run copy by copy. Ragged windows are right-padded:
in a causal LM a position never sees later ones, and padded positions are excluded from the loss and the
log-likelihood, so padding changes nothing. Gradient clipping and non-finite-step skipping are applied per
copy with the formulas of ``clip_grad_norm_``, and AdamW is torch's fused kernel (the one the batch-1 loop
uses) over the copies, each with its own step count; a skipped copy is left out of the update, so its
weights, moments and step count stay exactly as they were. Results equal the batch-1 loop's
(:class:`tttnn.core.ttt.TTTRunner`) up to float rounding, for models without dropout: with dropout in train mode
(gpt2), each copy draws its own masks from one shared stream, so results equal it in distribution only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from tttnn.core.metrics import rolling_windows
from tttnn.core.resume import Document
from tttnn.core.settings import TTTConfig
from tttnn.core.ttt import Progress, TTTRunner, document_seed, sync
from tttnn.models.load import tokenize

__all__ = ["BatchedTTTRunner"]

log = logging.getLogger(__name__)

IGNORE = -100

#: Attention inside the batched forward: ``"eager"`` (the model's own matmul-softmax code, any HF family) or
#: ``"sdpa-math"`` (SDPA restricted to its math backend). Both have vmap batching rules forward and backward;
#: SDPA's fused CPU/CUDA kernels do not (a per-copy loop with a "batching rule" warning). Eager was chosen by
#: measurement (benchmarks/README.md, "GPU"): as fast or faster on CPU, and it also replaces flash/flex implementations.
BATCHED_ATTENTION = "eager"
ATTENTION_CHOICES = ("eager", "sdpa-math")


@contextlib.contextmanager
def batchable_attention(model: torch.nn.Module, how: str = BATCHED_ATTENTION) -> Iterator[None]:
    """Run ``model`` with attention that vmap batches (no per-copy fallback); its own is restored afterwards."""
    if how not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {list(ATTENTION_CHOICES)}, got {how!r}")
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    want = "eager" if how == "eager" else "sdpa"
    switch = before is not None and before != want and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation(want)
    try:
        with sdpa_kernel(SDPBackend.MATH):  # also covers modules that call SDPA directly (no HF config)
            yield
    finally:
        if switch:
            model.set_attn_implementation(before)


# The input embedding in the batched forward: each copy passes only the rows of its window's tokens (looked
# up by position) instead of its whole [V, d] table, and the rows' gradients are added into the table's
# gradient in place. Through the table, vmap's embedding would copy the whole stacked table on every forward
# (it is stored transposed, see _match_layouts) and its backward would build a dense [copies, V, d] gradient
# to be summed with the tied output layer's transposed one: on SmolLM2 those two passes cost as much as all
# of the step's batched matmuls (measured, CPU).
@dataclass(frozen=True)
class _Embedding:
    """Where the trained input-embedding table sits among the model's parameter names (see the note above)."""

    param: str  # its name among the trained parameters
    key: str  # the embedding module's weight (gets the rows)
    aliases: tuple[str, ...]  # other names of the same tensor (a tied output layer: gets the whole table)
    module: torch.nn.Embedding
    padding_idx: int | None


def _input_embedding(model: torch.nn.Module, param_names: Sequence[str]) -> _Embedding | None:
    """The model's trained input embedding (an ``nn.Embedding`` without ``max_norm``), else None."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if get is not None else None
    if not isinstance(emb, torch.nn.Embedding) or emb.max_norm is not None or not emb.weight.requires_grad:
        return None
    names = [n for n, p in model.named_parameters(remove_duplicate=False) if p is emb.weight]
    key = next((f"{m}.weight" for m, mod in model.named_modules() if mod is emb), None)
    param = next((n for n in names if n in param_names), None)
    if key is None or param is None or key not in names:
        return None
    return _Embedding(param, key, tuple(n for n in names if n != key), emb, emb.padding_idx)


@contextlib.contextmanager
def _no_padding_idx(emb: _Embedding | None) -> Iterator[None]:
    """Rows looked up by position must all get gradients: the padding token is left out afterwards instead."""
    if emb is None or emb.padding_idx is None:
        yield
        return
    emb.module.padding_idx = None
    try:
        yield
    finally:
        emb.module.padding_idx = emb.padding_idx


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    """The permutation that undoes ``perm``."""
    inv = [0] * len(perm)
    for i, d in enumerate(perm):
        inv[d] = i
    return tuple(inv)


def _per_copy(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a per-copy vector ``[S]`` so that it broadcasts against a stacked ``[S, ...]`` tensor."""
    return x.view(-1, *([1] * (ndim - 1)))


class BatchedTTTRunner(TTTRunner):
    """Runs TTT on up to ``batch_size`` documents at once; ``run_batch`` returns the same records as
    :meth:`TTTRunner.run_document`, in order (``seconds`` hold the batch's times divided among its documents)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        cfg: TTTConfig,
        batch_size: int | None = None,
        attention: str = BATCHED_ATTENTION,
    ) -> None:
        super().__init__(model, tokenizer, cfg)
        if attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {list(ATTENTION_CHOICES)}, got {attention!r}")
        self.attention = attention
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
        self._layouts: dict[str, tuple[int, ...]] = {}  # learned memory order of stacked tensors (see _match_layouts)
        self._emb = _input_embedding(model, self.param_names)
        self._loss_fn = self.precision.maybe_compile(torch.vmap(self._copy_loss, randomness="different"))
        self._eval_fn = self.precision.maybe_compile(torch.vmap(self._copy_loglik, randomness="different"))

    # -- stacked state ---------------------------------------------------------------------------------------
    def _perm(self, name: str) -> tuple[int, ...]:
        """Memory order of a stacked tensor's dimensions, outermost first (copies always outermost)."""
        return self._layouts.get(name) or tuple(range(self.pristine[name].dim() + 1))

    def _empty(self, name: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised ``[n, *shape]`` stack of parameter ``name`` in its learned memory layout."""
        perm = self._perm(name)
        shape = (n, *self.pristine[name].shape)
        return torch.empty([shape[d] for d in perm], dtype=dtype, device=self.device).permute(_inverse(perm))

    def _relayout(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` (a stack of parameter ``name``) copied into that parameter's learned memory layout."""
        return self._empty(name, t.shape[0], t.dtype).copy_(t)

    def reset_copies(self, n: int) -> None:
        """``n`` copies of the pristine weights, each with zero AdamW moments and step count 0."""
        for name in self.param_names:
            base = self.pristine[name].to(self.device, torch.float32)
            master = self._empty(name, n, torch.float32).copy_(base.expand(n, *base.shape))
            self.masters[name] = master
            self.exp_avg[name] = torch.zeros_like(master)  # zeros_like keeps the layout
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

        def select(name: str, t: torch.Tensor) -> torch.Tensor:  # index_select that keeps the memory layout
            perm = self._perm(name)
            return t.permute(perm).index_select(0, idx).permute(_inverse(perm))

        for name in self.param_names:
            self.masters[name] = select(name, self.masters[name])
            self.exp_avg[name] = select(name, self.exp_avg[name])
            self.exp_avg_sq[name] = select(name, self.exp_avg_sq[name])
            if self.precision.master:
                self.weights[name] = select(name, self.weights[name].detach()).requires_grad_(True)
            else:
                self.weights[name] = self.masters[name].requires_grad_(True)
        self.steps = [self.steps[i] for i in keep]

    @torch.no_grad()
    def _match_layouts(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Gradients in their parameters' memory layouts, as the fused AdamW kernel needs (it ignores strides)."""
        # The first time a gradient arrives in another dense layout (vmap's batched matmul gives a linear
        # layer's weight gradient transposed), the parameter's copies and moments move to that layout for good,
        # so later gradients need no copy; any other mismatch is copied into the parameter's layout.
        out = []
        for name, g in zip(self.param_names, grads):
            p = self.masters[name]
            if g.stride() != p.stride() and name not in self._layouts:
                perm = (0, *sorted(range(1, g.dim()), key=lambda d: (-g.stride(d), d)))
                if g.permute(perm).is_contiguous():
                    self._layouts[name] = perm
                    for state in (self.masters, self.exp_avg, self.exp_avg_sq):
                        state[name] = self._relayout(name, state[name])
                    if self.precision.master:
                        self.weights[name] = self._relayout(name, self.weights[name].detach()).requires_grad_(True)
                    else:
                        self.weights[name] = self.masters[name].requires_grad_(True)
                    p = self.masters[name]
            out.append(g if g.stride() == p.stride() else torch.empty_like(p).copy_(g))
        return out

    # -- one copy (vmapped over the copies) ------------------------------------------------------------------
    def _logits(self, params: dict[str, torch.Tensor], ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One copy's logits; with an :class:`_Embedding`, ``rows`` (one per position) replace the table."""
        if self._emb is None:
            return functional_call(self.model, params, (ids,), {"use_cache": False}).logits
        e = self._emb
        p = {k: v for k, v in params.items() if k != e.param}
        p.update({a: params[e.param] for a in e.aliases})  # a tied output layer still sees the whole table
        p[e.key] = rows
        pos = torch.arange(ids.numel(), device=ids.device).view(ids.shape)
        return functional_call(self.model, p, (pos,), {"use_cache": False}, tie_weights=False).logits

    def _copy_loss(
        self, params: dict[str, torch.Tensor], ids: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """Mean next-token loss of one copy on one right-padded window (labels already shifted, -100 = none)."""
        logits = self._logits(params, ids[None], rows)[0]
        n = (labels != IGNORE).sum().clamp(min=1)
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum") / n

    def _copy_loglik(
        self,
        params: dict[str, torch.Tensor],
        ids: torch.Tensor,
        targets: torch.Tensor,
        mask: torch.Tensor,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        """Per-window sums of target log-probabilities of one copy on right-padded windows ``[w, L]``."""
        logits = self._logits(params, ids, rows)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        return torch.where(mask, logp, torch.zeros_like(logp)).sum(-1)

    def _rows(self, ids: torch.Tensor, grad: bool) -> torch.Tensor:
        """Each copy's embedding rows of its ids ``[S, ...]`` as ``[S, n, d]`` (a leaf when ``grad``), else a dummy."""
        if self._emb is None:
            return torch.zeros(ids.shape[0], 0, device=self.device)
        table = self.weights[self._emb.param].detach()
        copy = torch.arange(ids.shape[0], device=self.device)[:, None]
        rows = table[copy, ids.reshape(ids.shape[0], -1)]
        return rows.requires_grad_(True) if grad else rows

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
            ids = ids.to(self.device)
            with self.precision.autocast(), batchable_attention(self.model, self.attention), _no_padding_idx(self._emb):
                rows = self._rows(ids, grad=False)
                sums = self._eval_fn(self.weights, ids, tgt.to(self.device), mask.to(self.device), rows)
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
        ids = ids.to(self.device)
        with self.precision.autocast(), batchable_attention(self.model, self.attention), _no_padding_idx(self._emb):
            rows = self._rows(ids, grad=True)
            losses = self._loss_fn(self.weights, ids, labels.to(self.device), rows)
            inputs = [self.weights[n] for n in self.param_names] + ([rows] if self._emb is not None else [])
            raw = list(torch.autograd.grad(losses.sum(), inputs, allow_unused=True))
        # drop the graph (it holds the weights): a layout change below then frees each old copy as it goes
        loss = losses.detach().float()
        del losses, inputs
        row_grads = raw.pop() if self._emb is not None else None
        grads = self._match_layouts(
            [g.float() if g is not None else torch.zeros_like(self.masters[n]) for n, g in zip(self.param_names, raw)]
        )
        del raw
        if row_grads is not None:
            self._add_row_grads(grads, ids, row_grads)
        # per-copy clip_grad_norm_: the 2-norm of the per-parameter 2-norms, then every gradient times the
        # clamped coefficient (a factor of exactly 1 changes nothing and is not applied)
        flat = [g.permute(self._perm(n)).reshape(S, -1) for n, g in zip(self.param_names, grads)]  # views
        norms = torch.stack([torch.linalg.vector_norm(g, dim=1) for g in flat])
        total = torch.linalg.vector_norm(norms, dim=0)
        clip = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        coef = torch.clamp(clip / (total + 1e-6), max=1.0)
        if bool((coef < 1).any()):
            torch._foreach_mul_(grads, [_per_copy(coef, g.dim()) for g in grads])
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
    def _add_row_grads(self, grads: list[torch.Tensor], ids: torch.Tensor, row_grads: torch.Tensor) -> None:
        """Add the rows' gradients into the table's, except the padding token's (as ``nn.Embedding`` does)."""
        e = self._emb
        assert e is not None
        g = grads[self.param_names.index(e.param)]
        flat = ids.reshape(ids.shape[0], -1)
        row_grads = row_grads.to(g.dtype)
        if e.padding_idx is not None:
            row_grads = row_grads.masked_fill((flat == e.padding_idx)[..., None], 0.0)
        copy = torch.arange(ids.shape[0], device=self.device)[:, None].expand_as(flat)
        g.index_put_((copy, flat), row_grads, accumulate=True)

    @torch.no_grad()
    def _adamw(self, grads: list[torch.Tensor], applied: list[bool]) -> None:
        """``AdamW(fused=True)``'s update of every applied copy (as batch 1); the others keep all their state."""
        # One fused call: whole stacked tensors when every copy steps with the same count, else one entry per
        # (parameter, applied copy), each with its copy's step count (its own bias correction).
        cfg = self.cfg
        S = len(applied)
        for s, ok in enumerate(applied):
            self.steps[s] += 1 if ok else 0
        members = [s for s, ok in enumerate(applied) if ok]
        if not members:
            return
        names = self.param_names
        counts = torch.tensor(self.steps, dtype=torch.float32, device=self.device).unbind(0)
        # the kernel is elementwise, and on CPU reads a gradient's memory in order whatever its strides (torch
        # 2.13 makes grad.contiguous() and then uses the original): hand it the four tensors of a parameter as
        # the same contiguous views, dimensions in memory order
        perms = [self._perm(n) for n in names]
        stacked = [
            [state[n].permute(perm) for n, perm in zip(names, perms)]
            for state in (self.masters, dict(zip(names, grads)), self.exp_avg, self.exp_avg_sq)
        ]
        if len(members) == S and len(set(self.steps)) == 1:
            params, grad_l, exp_avgs, exp_avg_sqs = stacked
            steps = [counts[0]] * len(names)
        else:
            params, grad_l, exp_avgs, exp_avg_sqs = (self._per_copy_views(ts, members) for ts in stacked)
            steps = [counts[s] for _ in names for s in members]
        torch._fused_adamw_(
            params,
            grad_l,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=cfg.lr,
            beta1=cfg.betas[0],
            beta2=cfg.betas[1],
            weight_decay=cfg.weight_decay,
            eps=cfg.eps,
            amsgrad=False,
            maximize=False,
        )
        if self.precision.master:
            torch._foreach_copy_([self.weights[n] for n in names], [self.masters[n] for n in names])

    @staticmethod
    def _per_copy_views(tensors: list[torch.Tensor], members: list[int]) -> list[torch.Tensor]:
        """Copy ``s``'s slice of every stacked tensor, for each ``s`` in ``members`` (parameter-major order)."""
        out: list[torch.Tensor] = []
        for t in tensors:
            views = t.unbind(0)
            out.extend(views[s] for s in members)
        return out

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
        sync(dev)
        t0 = time.perf_counter()
        self.reset_copies(len(docs))
        sync(dev)
        reset_s = (time.perf_counter() - t0) / len(docs)
        for r in recs:
            r["seconds"]["reset"] = reset_s
        alive = list(range(len(docs)))  # alive[s]: the document held by copy s
        progress = Progress(" + ".join(d.doc_id for d in docs), cfg.k)

        def checkpoint(n: int) -> None:
            t = time.perf_counter()
            lls = self.evaluate_copies([evals[i] for i in alive])
            sync(dev)
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
            wins = []
            for i in alive:  # tokenizing is timed apart from training, as in the batch-1 loop (when it records it)
                t = time.perf_counter()
                wins.append(self.train_windows(docs[i].neighbors[n - 1].text))
                if "tokenize" in recs[i]["seconds"]:
                    recs[i]["seconds"]["tokenize"].append(time.perf_counter() - t)
            t = time.perf_counter()
            losses: list[list[float]] = [[] for _ in alive]
            norms: list[list[float]] = [[] for _ in alive]
            longest = max(len(w) for w in wins)
            for j in range(longest):
                step = [w[j] if j < len(w) else None for w in wins]
                lo, gn, ok = self.train_copies(step)
                progress.step(n, j + 1, longest)
                for s, i in enumerate(alive):
                    if step[s] is not None:
                        losses[s].append(lo[s])
                        norms[s].append(gn[s])
                        recs[i]["skipped_steps"] += 0 if ok[s] else 1
            sync(dev)
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
