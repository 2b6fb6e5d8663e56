"""Per-task tables from TTT results: bpb at every neighbour count with bootstrap confidence intervals
over documents (ratio of sums inside every resample), the Pile-weighted aggregate, measured costs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tttnn import jsonl
from tttnn.core.resume import check_consistent
from tttnn.data.tasks import PILE_WEIGHTS
from tttnn.report.stats import aggregate, pile_weighted

PILE_ROW = "pile-weighted"

log = logging.getLogger(__name__)


def load_results(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Records of ``ttt/<run>/<model>/<task>.jsonl`` files, each tagged with its model and task."""
    out = []
    for p in paths:
        model, task = Path(p).parent.name, Path(p).stem
        recs = jsonl.read_records(p)
        if not recs:
            raise ValueError(f"{p}: no documents")
        check_consistent(recs, str(p))
        for i, r in enumerate(recs, 1):
            lls = r.get("loglik") or []
            bad = [n for n, ll in zip(r.get("checkpoints") or [], lls) if not isinstance(ll, (int, float)) or not math.isfinite(ll)]
            if not lls or bad:
                raise ValueError(
                    f"{p}, line {i} (document {r.get('doc_id')}): no finite log-likelihood at checkpoint(s) "
                    f"{bad or 'any'}; delete the file and rerun its job"
                )
            out.append({**r, "model": model, "task": task})
    return out


def aligned_logliks(
    recs: Sequence[dict[str, Any]], checkpoints: Sequence[int] | None = None
) -> tuple[list[int], np.ndarray]:
    """Checkpoints of a task's documents and their log-likelihoods (docs x checkpoints), measured values only.

    A document with fewer neighbours than k stops at its last neighbour (its model no longer changes), so
    at a checkpoint past its last one its value is its last: carried forward here, never stored in the
    results. A checkpoint that a document skipped *inside* its range (e.g. the batch order, whose first
    minibatch completes several neighbours at once) was not measured: it is left out of the table for the
    whole task, never filled with another checkpoint's value. ``checkpoints`` (default: the union of the
    documents') lists the columns wanted, so tasks of one model can share them.
    """
    cps = sorted(checkpoints) if checkpoints is not None else sorted({n for r in recs for n in r["checkpoints"]})
    ll = np.full((len(recs), len(cps)), np.nan)
    for i, r in enumerate(recs):
        own = dict(zip(r["checkpoints"], r["loglik"]))
        if 0 not in own:
            raise ValueError(f"document {r.get('doc_id')} has no evaluation at n = 0")
        end = max(own)
        for j, n in enumerate(cps):
            if n in own:
                ll[i, j] = own[n]
            elif n > end:
                ll[i, j] = own[end]
    measured = ~np.isnan(ll).any(axis=0)
    return [c for c, m in zip(cps, measured) if m], ll[:, measured]


def short_documents(recs: Sequence[dict[str, Any]], n: int) -> int:
    """How many documents stopped before checkpoint ``n`` (fewer neighbours than n: their value is carried)."""
    return sum(1 for r in recs if max(r["checkpoints"]) < n)


def drop_off_median(recs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The authors' rule (process_results.py): keep only documents with the task's median number of
    checkpoints; returns (kept, ids of the dropped)."""
    counts = [len(r["checkpoints"]) for r in recs]
    med = float(np.median(counts))
    kept = [r for r, c in zip(recs, counts) if c == med]
    if not kept:  # an even count split between two lengths: keep the longer documents
        top = max(counts)
        kept = [r for r, c in zip(recs, counts) if c == top]
    ids = {r["doc_id"] for r in kept}
    return kept, [r["doc_id"] for r in recs if r["doc_id"] not in ids]


def bootstrap_bpb(ll: np.ndarray, nb: np.ndarray, B: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap samples (B x columns) of bpb as a ratio of sums over resampled documents."""
    idx = rng.integers(0, len(nb), size=(B, len(nb)))
    return -ll[idx].sum(1) / (nb[idx].sum(1)[:, None] * math.log(2))


def _task_curves(recs: list[dict[str, Any]], B: int, rng: np.random.Generator, checkpoints: Sequence[int]):
    """Point values and bootstrap samples of bpb per checkpoint for one (model, task)."""
    cps, ll = aligned_logliks(recs, checkpoints)
    nb = np.array([r["n_bytes"] for r in recs], dtype=np.float64)
    return cps, ll, nb, bootstrap_bpb(ll, nb, B, rng)


SHORT_POLICIES = ("carry", "drop")


def summarize(records: list[dict[str, Any]], bootstrap: int = 1000, seed: int = 0, short: str = "carry"):
    """(summary, curves, costs) data frames; see docs/outputs.md for their columns.

    ``short`` is what happens to documents with fewer neighbours than k: ``carry`` (default) keeps every
    document, its last value carried to later checkpoints; ``drop`` is the authors' rule, keeping only the
    documents with the task's median number of checkpoints. Either way the tables count them
    (``n_short_docs``: documents carried at that checkpoint; ``n_dropped_docs``).
    """
    if short not in SHORT_POLICIES:
        raise ValueError(f"figures.short_documents must be one of {list(SHORT_POLICIES)}, got {short!r}")
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(records)
    curve_rows, boots = [], {}
    # every task of a model gets the model's checkpoints (a task whose documents all stop short is carried)
    model_cps = {m: sorted({n for r in g["checkpoints"] for n in r}) for m, g in df.groupby("model")}
    for (model, task), g in df.groupby(["model", "task"], sort=True):
        recs = g.to_dict("records")
        dropped: list[str] = []
        if short == "drop":
            recs, dropped = drop_off_median(recs)
            if dropped:
                log.warning("%s/%s: %d documents off the median checkpoint count dropped", model, task, len(dropped))
        cps, ll, nb, boot = _task_curves(recs, bootstrap, rng, model_cps[model])
        skipped = sorted(set(model_cps[model]) - set(cps))
        if skipped:
            log.warning("%s/%s: checkpoints %s not measured for every document: left out", model, task, skipped)
        boots[(model, task)] = (cps, boot)
        nw = [r["n_words"] for r in recs]
        bpb0 = aggregate(ll[:, 0], nb, nw)["bits_per_byte"]
        for j, n in enumerate(cps):
            m = aggregate(ll[:, j], nb, nw)
            ratio = boot[:, j] / boot[:, 0]
            curve_rows.append(
                {
                    "model": model,
                    "task": task,
                    "n_neighbors": n,
                    **m,
                    "ratio": m["bits_per_byte"] / bpb0,
                    "ci_low": np.quantile(boot[:, j], 0.025),
                    "ci_high": np.quantile(boot[:, j], 0.975),
                    "ratio_ci_low": np.quantile(ratio, 0.025),
                    "ratio_ci_high": np.quantile(ratio, 0.975),
                    "n_docs": len(recs),
                    "n_bytes": int(nb.sum()),
                    "n_short_docs": short_documents(recs, n),
                    "n_dropped_docs": len(dropped),
                }
            )
    curves = pd.DataFrame(curve_rows)
    # Pile-weighted aggregate over the tasks that have Pile weights, per model and checkpoint
    for model, g in curves.groupby("model", sort=True):
        tasks = [t for t in sorted(g["task"].unique()) if t in PILE_WEIGHTS]
        if not tasks:
            continue
        # the checkpoints every task measured (each task's own row keeps all of its own)
        cps = [n for n in boots[(model, tasks[0])][0] if all(n in boots[(model, t)][0] for t in tasks)]
        if len(cps) < len(model_cps[model]):
            log.warning("%s: Pile-weighted rows only at the checkpoints every task has: %s", model, cps)
        cols = {t: [boots[(model, t)][0].index(n) for n in cps] for t in tasks}
        wboot = pile_weighted({t: boots[(model, t)][1][:, cols[t]] for t in tasks})  # B x checkpoints
        g = g[g["task"].isin(tasks)]
        bpb_at = {
            n: pile_weighted(dict(zip(t["task"], t["bits_per_byte"]))) for n, t in g.groupby("n_neighbors") if n in cps
        }
        for j, n in enumerate(cps):
            rows = g[g["n_neighbors"] == n].set_index("task").loc[tasks]
            bpb, bpb0 = float(bpb_at[n]), float(bpb_at[0])
            ratio = wboot[:, j] / wboot[:, 0]
            curve_rows.append(
                {
                    "model": model,
                    "task": PILE_ROW,
                    "n_neighbors": n,
                    "bits_per_byte": bpb,
                    "byte_perplexity": 2.0**bpb,
                    "word_perplexity": float("nan"),
                    "ratio": bpb / bpb0,
                    "ci_low": np.quantile(wboot[:, j], 0.025),
                    "ci_high": np.quantile(wboot[:, j], 0.975),
                    "ratio_ci_low": np.quantile(ratio, 0.025),
                    "ratio_ci_high": np.quantile(ratio, 0.975),
                    "n_docs": int(rows["n_docs"].sum()),
                    "n_bytes": int(rows["n_bytes"].sum()),
                    "n_short_docs": int(rows["n_short_docs"].sum()),
                    "n_dropped_docs": int(rows["n_dropped_docs"].sum()),
                }
            )
    curves = pd.DataFrame(curve_rows)
    last = curves.groupby("model")["n_neighbors"].transform("max")
    summary = curves[(curves["n_neighbors"] == 0) | (curves["n_neighbors"] == last)]
    summary = summary[
        [
            "task",
            "model",
            "n_neighbors",
            "bits_per_byte",
            "byte_perplexity",
            "word_perplexity",
            "ci_low",
            "ci_high",
            "n_docs",
            "n_bytes",
            "n_short_docs",
            "n_dropped_docs",
        ]
    ].reset_index(drop=True)
    costs = pd.DataFrame(
        [
            {
                "model": r["model"],
                "task": r["task"],
                "doc_id": r["doc_id"],
                "n_neighbors": r.get("n_neighbors", 0),
                "train_seconds_per_neighbor": float(np.mean(r["seconds"]["train"])) if r["seconds"]["train"] else 0.0,
                "train_tokens_per_neighbor": float(np.mean(r["train_tokens"])) if r["train_tokens"] else 0.0,
                "eval_seconds": float(np.mean(r["seconds"]["eval"][:1])),
                "retrieve_seconds": float(r.get("retrieve_seconds", 0.0)),
                "reset_seconds": float(r["seconds"]["reset"]),
                "n_tokens": r["n_tokens"],
            }
            for r in records
        ]
    )
    return summary, curves, costs


def gap_from_records(records: list[dict[str, Any]], models: dict[str, Any]) -> pd.DataFrame:
    """:func:`gap_table` on the documents both models ran (a model with ``n_docs`` runs fewer), per task and
    Pile-weighted; the rows say how many documents each gap rests on."""
    trained = [m for m, s in models.items() if s.get("train", True)]
    large = [m for m, s in models.items() if not s.get("train", True)]
    by = {}
    for r in records:
        by.setdefault((r["model"], r["task"]), []).append(r)
    rows = []
    for small in trained:
        for big in large:
            vals: dict[str, tuple[float, float, float]] = {}
            ks = []
            for (m, task), recs in sorted(by.items()):
                if m != small or (big, task) not in by:
                    continue
                ids = {r["doc_id"] for r in by[(big, task)]}
                mine = [r for r in recs if r["doc_id"] in ids]
                if not mine:
                    continue
                big_recs = {r["doc_id"]: r for r in by[(big, task)]}
                cps, ll = aligned_logliks(mine, sorted({n for r in recs for n in r["checkpoints"]}))
                nb = np.array([r["n_bytes"] for r in mine], dtype=float)
                ll_big = np.array([big_recs[r["doc_id"]]["loglik"][0] for r in mine])
                to_bpb = -1 / (nb.sum() * math.log(2))
                vals[task] = (ll[:, 0].sum() * to_bpb, ll[:, -1].sum() * to_bpb, ll_big.sum() * to_bpb)
                ks.append(cps[-1])
                rows.append((task, small, big, cps[-1], *vals[task], len(mine)))
            weighted = [t for t in vals if t in PILE_WEIGHTS]
            if weighted:
                w = [pile_weighted({t: vals[t][i] for t in weighted}) for i in range(3)]
                docs = sum(r[-1] for r in rows if r[1] == small and r[2] == big and r[0] in weighted)
                rows.append((PILE_ROW, small, big, min(ks), *w, docs))
    out = pd.DataFrame(
        rows, columns=["task", "small", "large", "k", "small_before", "small_after", "large_bpb", "n_docs"]
    )
    gap = out["small_before"] - out["large_bpb"]
    out["gap_closed"] = ((out["small_before"] - out["small_after"]) / gap).where(gap > 0)
    return out[["task", "small", "large", "k", "small_before", "small_after", "large_bpb", "gap_closed", "n_docs"]]


def gap_table(curves: pd.DataFrame, models: dict[str, Any]) -> pd.DataFrame:
    """The paper's model-size claim: per task, how much of the gap between each trained (small) model and
    each untrained (large) one TTT closes: (small before - small after k) / (small before - large)."""
    trained = [m for m, s in models.items() if s.get("train", True)]
    large = [m for m, s in models.items() if not s.get("train", True)]
    rows = []
    for small in trained:
        s = curves[curves["model"] == small]
        k = s["n_neighbors"].max()
        for big in large:
            b = curves[(curves["model"] == big) & (curves["n_neighbors"] == 0)].set_index("task")["bits_per_byte"]
            for task, g in s.groupby("task", sort=False):
                if task not in b.index:
                    continue
                before = float(g.loc[g["n_neighbors"] == 0, "bits_per_byte"].iloc[0])
                after = float(g.loc[g["n_neighbors"] == k, "bits_per_byte"].iloc[0])
                gap = before - float(b[task])
                rows.append(
                    {
                        "task": task,
                        "small": small,
                        "large": big,
                        "k": int(k),
                        "small_before": before,
                        "small_after": after,
                        "large_bpb": float(b[task]),
                        "gap_closed": (before - after) / gap if gap > 0 else float("nan"),
                    }
                )
    cols = ["task", "small", "large", "k", "small_before", "small_after", "large_bpb", "gap_closed"]
    return pd.DataFrame(rows, columns=cols)
