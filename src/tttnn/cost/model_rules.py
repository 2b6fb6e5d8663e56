"""The plan's rows of the model rules: TTT, tune_lr, evaluate, the methods (in blocks under a cluster limit),
and the light table and figure jobs."""

from __future__ import annotations

import math

from tttnn.blocks import blocks_enabled, docs_per_block, n_blocks
from tttnn.config import (
    lr_tune_settings,
    ttt_config,
)
from tttnn.cost.archs import MiB, eval_memory, ttt_memory
from tttnn.cost.schedule import Row, fmt_count, n_windows
from tttnn.jobs import (
    cluster_settings,
    methods_per_task,
)


class ModelRules:
    """Planner rows of the rules that load a model (mixed into :class:`tttnn.cost.plan.Planner`)."""

    def _block_size(self, rule: str, m: str, doc_s: float) -> int | None:
        """Documents per block of (rule, model) from its costliest document (None without blocks)."""
        if not blocks_enabled(self.config):
            return None
        cl = cluster_settings(self.config)
        size = cl["block_docs"]
        if size is None and self.sizes is not None:
            size = self.sizes[(rule, m)]
        elif size is None:
            mult = ttt_config(self.config, m).batch_documents if rule == "ttt" else 1
            size = docs_per_block(cl["max_runtime"], cl["runtime_fill"], doc_s, self._job_overhead(m), mult)
        self.block_docs[(rule, m)] = size
        return size

    def _add_task_jobs(self, r: Row, m: str, size: int | None, n: int, doc_s: float) -> None:
        """One task's jobs of a per-task rule: one over its ``n`` documents, or one per block (and a merge)."""
        if size is None:
            r.add_job(self._job_overhead(m) + n * doc_s)
            return
        for b in range(n_blocks(n, size)):
            r.add_job(self._job_overhead(m) + min(size, n - b * size) * doc_s)
        self.merged_files += 1

    def _merge_blocks(self) -> None:
        """The merge of each task's blocks: a local job on the submit host (``localrules``), seconds each."""
        if not self.merged_files:
            return
        r = self.row("merge_blocks", threads=1)
        for _ in range(self.merged_files):
            r.add_job(self.startup_light + 1.0)
        r.work = f"{self.merged_files} task files from their blocks"
        r.peak_mem_mb = self.base_light_mb()
        r.mem_mb_asked = 1000

    def _doc_cost(
        self,
        m: str,
        task: str,
        k: int,
        checkpoints: int,
        eval_tokens: float | None = None,
        steps: int | None = None,
        train_tokens: float | None = None,
        batch: int | None = None,
    ) -> tuple[float, float, int, float]:
        """(seconds, FLOPs, training steps, trained tokens) of one document: ``checkpoints`` evaluations of its
        tokens and ``k`` neighbours' windows (or ``steps`` steps on windows of ``train_tokens``)."""
        arch, _ = self.archs[m]
        cfg = ttt_config(self.config, m)
        dev = self.model_device
        L = cfg.max_length
        B = batch or cfg.batch_documents
        doc = self.tokens(self.corpus.test_bytes[task]) if eval_tokens is None else eval_tokens
        nb_tokens = self.tokens(self.corpus.neighbor_bytes[task]) if train_tokens is None else train_tokens
        cap = cfg.max_windows_per_neighbor
        wins = n_windows(nb_tokens, L) if cap is None else min(cap, n_windows(nb_tokens, L))
        win_tokens = min(L, nb_tokens)
        n_steps = k * wins if steps is None else steps
        step_flops = arch.train_flops(win_tokens) * win_tokens
        eval_ctx = min(L, doc)
        eval_flops = arch.forward_flops(eval_ctx) * doc
        secs = n_steps * (
            dev.step_seconds(arch, step_flops, cfg.dtype, cfg.tf32, B, True) + dev.optimizer_seconds(arch)
        )
        secs += checkpoints * dev.step_seconds(arch, eval_flops, cfg.dtype, cfg.tf32, B, False)
        return secs, n_steps * step_flops + checkpoints * eval_flops, n_steps, n_steps * win_tokens

    def _model_row(self, rule: str, m: str) -> Row:
        arch, src = self.archs[m]
        cfg = ttt_config(self.config, m)
        dev = self.model_device
        r = self.row(rule, m, device=dev)
        trains = rule != "evaluate" and not rule.startswith(("incontext", "interpolation"))
        L = cfg.max_length
        doc = max(self.tokens(b) for b in self.corpus.test_bytes.values())
        nb = max(self.tokens(b) for b in self.corpus.neighbor_bytes.values())
        ev_tokens, ev_windows = int(min(L, doc)), min(cfg.eval_batch_size, n_windows(doc, L))
        if rule == "incontext":  # neighbours' tokens before every scored window
            sec = (self.config.get("methods") or {}).get("incontext") or {}
            ev_tokens = int(min(sec.get("max_length") or L, doc) + (sec.get("budget") or L))
        if trains:
            mem = ttt_memory(arch, int(min(L, nb)), cfg.batch_documents, cfg.dtype, ev_tokens, ev_windows, not dev.gpu)
        else:
            mem = eval_memory(arch, ev_tokens, ev_windows, not dev.gpu)
        if dev.gpu:
            r.gpu_mem_mb = mem / MiB
            r.peak_mem_mb = self.base_mb() + 4 * arch.params / MiB
            cap = self.cal["gpu"]["peaks"][dev.kind]["memory_gb"] * 1e9 / MiB
            if r.gpu_mem_mb > cap:
                r.note = f"needs {r.gpu_mem_mb / 1024:.0f} GiB: more than one {dev.kind} ({cap / 1024:.0f} GiB)"
        else:
            r.peak_mem_mb = self.base_mb() + mem / MiB
        r.mem_mb_asked = self.mem_asked(m, rule)
        return r

    def _model_docs(self, m: str, task: str) -> int:
        """Test documents model ``m`` runs on in ``task`` (``models.<m>.n_docs`` caps them)."""
        n = self.corpus.test_docs[task]
        cap = self.config["models"][m].get("n_docs")
        return min(n, cap) if cap else n

    def _job_overhead(self, m: str) -> float:
        return self.startup + self.load_seconds(self.archs[m][0])

    def _ttt(self, m: str) -> None:
        cfg = ttt_config(self.config, m)
        k = min(cfg.k, int(self.corpus.chunks))
        ck = len(cfg.checkpoints())
        r = self._model_row("ttt", m)
        steps = tokens = 0.0
        costs = {t: self._doc_cost(m, t, k, ck) for t in self.tasks}
        size = self._block_size("ttt", m, max(c[0] for c in costs.values()))
        for t, (secs, fl, st, tk) in costs.items():
            n = self._model_docs(m, t)
            self._add_task_jobs(r, m, size, n, secs)
            r.flops += n * fl
            steps += n * st
            tokens += n * tk
        docs = sum(self._model_docs(m, t) for t in self.tasks)
        r.work = f"{docs} docs: {fmt_count(steps)} steps, {fmt_count(tokens)} train tokens, {docs * ck} evals"
        r.disk_mb = docs * (2000 + 300 * k) / MiB
        if cfg.batch_documents > 1:
            r.work += f" (B = {cfg.batch_documents})"

    def _tune_lr(self, m: str) -> None:
        """``ttt.lr: auto``: every rate of the grid on the validation documents, evaluated at 0 and lr_tune.k."""
        tune = lr_tune_settings(self.config, m)
        k = min(tune.k, int(self.corpus.chunks))
        r = self._model_row("tune_lr", m)
        secs, docs = self._job_overhead(m), 0
        for t in self.all_tasks:
            n = min(self.corpus.valid_docs[t], tune.n_docs or self.corpus.valid_docs[t])
            s, fl, _, _ = self._doc_cost(m, t, k, 2)
            secs += len(tune.grid) * n * s
            r.flops += len(tune.grid) * n * fl
            docs += n
        r.add_job(secs)
        r.work = f"{len(tune.grid)} rates x {docs} valid docs x {k} neighbours"
        r.disk_mb = 0.01

    def _evaluate(self, m: str) -> None:
        r = self._model_row("evaluate", m)
        secs, docs = self._job_overhead(m), 0
        costs = {t: self._doc_cost(m, t, 0, 1, batch=1) for t in self.all_tasks}
        size = self._block_size("evaluate", m, max(c[0] for c in costs.values()))
        for t, (s, fl, _, _) in costs.items():
            n = self._model_docs(m, t)
            if size is not None:  # with blocks: jobs per task and block, not one over every task
                self._add_task_jobs(r, m, size, n, s)
            secs += n * s
            r.flops += n * fl
            docs += n
        if size is None:
            r.add_job(secs)
        r.work = f"{docs} docs x 1 eval"
        r.disk_mb = docs * 2000 / MiB

    def _methods(self, m: str) -> None:
        c = self.config
        ms = c.get("methods") or {}
        cfg = ttt_config(c, m)
        k = min(cfg.k, ms["k"]) if ms.get("k") and cfg.k else cfg.k
        k = min(k, int(self.corpus.chunks))
        ablation_ck = len({0, k, *[n for n in (ms.get("eval_at") or [0, k]) if n <= k]})
        n_docs = ms.get("n_docs")
        over = self._job_overhead(m)

        def docs(task: str, ablation: bool, split: str = "test") -> int:
            n = (self.corpus.test_docs if split == "test" else self.corpus.valid_docs)[task]
            return min(n, n_docs) if (ablation and n_docs) else n

        tally: dict[str, list[int]] = {}  # rule -> [documents, evaluations, variants]
        costs: dict[str, dict[str, tuple[float, float, int, int]]] = {}  # method -> task -> (s, flops, evals, docs)
        for method in self.methods:
            costs[method] = {}
            for t in self.all_tasks:
                if method == "incontext":
                    sec = ms.get("incontext") or {}
                    L = sec.get("max_length") or cfg.max_length
                    budget = sec.get("budget") or ((self.archs[m][0].max_positions or 2 * L) - L)
                    doc = self.tokens(self.corpus.test_bytes[t])
                    ctx_budget = min(budget, k * self.tokens(self.nb_text))
                    plain, _, _, _ = self._doc_cost(m, t, 0, 1, batch=1)
                    arch = self.archs[m][0]
                    ctx_flops = arch.forward_flops(min(L, doc) + ctx_budget) * (doc + n_windows(doc, L) * ctx_budget)
                    s = plain + self.model_device.step_seconds(arch, ctx_flops, cfg.dtype, cfg.tf32, 1, False)
                    fl, ev, n = ctx_flops, 2, docs(t, False)
                elif method in ("interpolation", "interpolation_valid"):
                    split = "valid" if method.endswith("_valid") else "test"
                    s, fl, _, _ = self._doc_cost(m, t, 0, 1, batch=1)
                    ev, n = 1, docs(t, False, split)
                elif method == "dynamic_eval":
                    steps = (ms.get("dynamic_eval") or {}).get("steps") or k
                    half = self.tokens(self.corpus.test_bytes[t]) / 2
                    s, fl, _, _ = self._doc_cost(
                        m, t, k, ablation_ck, eval_tokens=half, steps=steps, train_tokens=half, batch=1
                    )
                    ev, n = ablation_ck, docs(t, True)
                elif method == "order-batch":
                    bs = (ms.get("order") or {}).get("batch_size", 5)
                    s, fl, st, _ = self._doc_cost(m, t, k, ablation_ck, batch=1)
                    # the same windows in ceil(k / batch_size) updates: fewer optimizer steps
                    s -= (st - math.ceil(st / bs)) * self.model_device.optimizer_seconds(self.archs[m][0])
                    ev, n = ablation_ck, docs(t, True)
                else:  # order-farthest, index_size-n: TTT on the first n_docs, evaluated at the ablation checkpoints
                    s, fl, _, _ = self._doc_cost(m, t, k, ablation_ck, batch=1)
                    ev, n = ablation_ck, docs(t, True)
                costs[method][t] = (s, fl, ev, n)
        sizes: dict[str, int | None] = {}
        for method in self.methods:  # a block size per rule (its variants share it): from its costliest document
            rule = method.split("-")[0]
            worst = max(c[0] for mm, tc in costs.items() if mm.split("-")[0] == rule for c in tc.values())
            sizes[rule] = self._block_size(rule, m, worst)
        per_task = methods_per_task(c)
        for method in self.methods:
            rule = method.split("-")[0]
            r = next((x for x in self.rows if x.rule == rule and x.model == m), None) or self._model_row(rule, m)
            secs, total_docs, evals = 0.0, 0, 0
            for t, (s, fl, ev, n) in costs[method].items():
                if sizes[rule] is not None:  # cluster blocks: jobs per task and block
                    self._add_task_jobs(r, m, sizes[rule], n, s)
                elif per_task:  # methods.jobs: per_task: one job (start-up and model load) per task
                    r.add_job(over + n * s)
                secs += n * s
                r.flops += n * fl
                total_docs += n
                evals += n * ev
            if sizes[rule] is None and not per_task:
                r.add_job(over + secs)
            t_docs, t_evals, variants = tally.setdefault(rule, [0, 0, 0])
            tally[rule] = [t_docs + total_docs, t_evals + evals, variants + 1]
            r.work = f"{tally[rule][0]} docs, {tally[rule][1]} evals" + (
                f" ({tally[rule][2]} variants)" if tally[rule][2] > 1 else ""
            )
            r.disk_mb += total_docs * (2000 + 300 * k) / MiB

    def _light(self, rule: str) -> None:
        r = self.row(rule, threads=1)
        r.add_job(self.startup_light + 2.0)
        r.work = {"check_k": "k against the index", "lr_table": "table + figure"}.get(
            rule, "tables" if rule.startswith("summarize") else "figures"
        )
        r.peak_mem_mb = self.base_light_mb()
        r.mem_mb_asked = 2000
        r.disk_mb = 1.0
