"""The paper's claims as paired comparisons: for two methods on the same documents, the difference in bpb
(each side a ratio of sums over the documents) with a 95% bootstrap interval that resamples documents
within each task and keeps each document's pair together; Pile-weighted from the resampled task values.

A claim is *separated* when its interval excludes 0 in the paper's direction. Only checkpoints actually
measured are compared: a document without the checkpoint a claim needs is left out of it and counted
(``n_excluded``), never filled with another checkpoint's value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tttnn.data.tasks import PILE_WEIGHTS
from tttnn.report.compare import load_method_results
from tttnn.report.stats import choose_alpha, pile_weighted, with_alpha
from tttnn.report.summarize import PILE_ROW, bootstrap_bpb

Records = list[dict[str, Any]]
Results = Mapping[tuple[str, str, str], Records]
# per document: {doc_id: (loglik, n_bytes)} of one method at one checkpoint
Column = dict[str, tuple[float, int]]

CLAIM_ORDER = ["a", "b", "c", "d", "e", "f", "g(a)", "g(f)"]
COLUMNS = [
    "claim",
    "description",
    "model",
    "task",
    "k",
    "method_a",
    "method_b",
    "n_docs",
    "n_excluded",
    "value_a",
    "value_b",
    "reference",
    "diff",
    "lo",
    "hi",
    "diff_ratio",
    "ratio_lo",
    "ratio_hi",
    "gap_closed",
    "gap_lo",
    "gap_hi",
    "separated",
]


def interval(samples: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap samples; infinite samples (an undefined gap share) sort into the
    tails without interpolation, and any NaN makes the interval undefined."""
    x = np.asarray(samples, dtype=float)
    if len(x) == 0 or np.isnan(x).any():
        return math.nan, math.nan
    method = "linear" if np.isfinite(x).all() else "inverted_cdf"
    lo, hi = np.quantile(x, [0.025, 0.975], method=method)
    return float(lo), float(hi)


def bpb(ll: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Bits per byte as a ratio of sums over documents (axis 0), one value per column."""
    return -np.asarray(ll).sum(0) / (np.asarray(nb, dtype=float).sum() * math.log(2))


def paired_bootstrap(
    tasks: Mapping[str, tuple[np.ndarray, np.ndarray]], B: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Bootstrap bpb (B x columns) per task from ``{task: (loglik docs x columns, bytes per doc)}``, and
    Pile-weighted (or None without weighted tasks). Each resample draws documents within a task and takes
    every column of a drawn document, so the methods compared stay paired."""
    boots = {t: bootstrap_bpb(ll, nb, B, rng) for t, (ll, nb) in sorted(tasks.items())}
    weighted = {t: b for t, b in boots.items() if t in PILE_WEIGHTS}
    return boots, (pile_weighted(weighted) if weighted else None)


def paired_difference(
    ll_a: Sequence[float], ll_b: Sequence[float], n_bytes: Sequence[float], B: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """(bpb(A) - bpb(B), 95% low, 95% high) for one task's paired documents: the basic paired interval."""
    ll = np.column_stack([np.asarray(ll_a, dtype=float), np.asarray(ll_b, dtype=float)])
    nb = np.asarray(n_bytes, dtype=float)
    boot = bootstrap_bpb(ll, nb, B, np.random.default_rng(seed))
    point = bpb(ll, nb)
    return float(point[0] - point[1]), *interval(boot[:, 0] - boot[:, 1])


def measured(recs: Records, n: int) -> Column:
    """Log-likelihood and bytes of each document that was evaluated at checkpoint ``n`` (no carrying forward)."""
    out: Column = {}
    for r in recs:
        own = dict(zip(r["checkpoints"], r["loglik"]))
        if n in own and own[n] is not None:
            out[r["doc_id"]] = (float(own[n]), int(r["n_bytes"]))
    return out


def pair_up(columns: Sequence[Column], universe: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(loglik docs x columns, bytes, doc ids) of the documents of ``universe`` present in every column;
    the documents left out are ``len(universe) - len(ids)``. The same document must have the same bytes."""
    ids = [d for d in dict.fromkeys(universe) if all(d in c for c in columns)]
    ll = np.array([[c[d][0] for c in columns] for d in ids], dtype=float).reshape(len(ids), len(columns))
    nb = np.array([columns[0][d][1] for d in ids], dtype=float)
    for d in ids:
        sizes = {c[d][1] for c in columns}
        if len(sizes) > 1:
            raise ValueError(f"document {d}: different byte counts {sorted(sizes)} in the results compared")
    return ll, nb, ids


@dataclass
class Claim:
    """One claim: per task the columns [A, B, reference (no TTT on the same documents), ...] to compare."""

    claim: str
    description: str
    model: str
    k: int
    method_a: str
    method_b: str
    columns: dict[str, list[Column]] = field(default_factory=dict)  # per task
    universe: dict[str, list[str]] = field(default_factory=dict)  # per task: the documents the claim is about
    labels_b: dict[str, str] = field(default_factory=dict)  # per task, where B's label differs (alpha)
    gap: bool = False  # columns are [small after k, large, small before]: the share of the gap closed


def _gap_share(before: np.ndarray, after: np.ndarray, large: np.ndarray) -> np.ndarray:
    """(before - after) / (before - large); where there is no gap (large not better) the share is +inf if TTT
    lowered bpb (the small model passed the large one) and -inf if it raised it: the limit from a tiny gap."""
    num, den = before - after, before - large
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.sign(num) * np.inf)
    return np.where((den <= 0) & (num == 0), np.nan, share)


def _row(
    c: Claim,
    task: str,
    point: np.ndarray,
    boot: np.ndarray | None,
    n_docs: int,
    n_excl: int,
    min_docs: int | None = None,
) -> dict:
    """A table row from point bpb per column and bootstrap samples (B x columns) of the paired documents.

    With fewer than 2 documents in a task (``min_docs``: the smallest task of a Pile-weighted row) the
    bootstrap has nothing to resample: the interval is left empty and the claim is never called separated.
    """
    base = {
        "claim": c.claim,
        "description": c.description,
        "model": c.model,
        "task": task,
        "k": c.k,
        "method_a": c.method_a,
        "method_b": c.labels_b.get(task, c.method_b),
        "n_docs": n_docs,
        "n_excluded": n_excl,
    }
    if boot is None or n_docs == 0:
        return {**{k: math.nan for k in COLUMNS}, **base, "separated": False}
    a, b, ref = point[0], point[1], point[2]
    lo, hi = interval(boot[:, 0] - boot[:, 1])
    row = {**base, "value_a": a, "value_b": b, "reference": ref, "diff": a - b, "lo": lo, "hi": hi}
    if c.gap:
        share = _gap_share(np.array([ref]), np.array([a]), np.array([b]))[0]
        g_lo, g_hi = interval(_gap_share(boot[:, 2], boot[:, 0], boot[:, 1]))
        row.update(
            diff_ratio=math.nan,
            ratio_lo=math.nan,
            ratio_hi=math.nan,
            gap_closed=float(share),
            gap_lo=g_lo,
            gap_hi=g_hi,
            separated=bool(g_lo > 0),
        )
    else:
        r_lo, r_hi = interval((boot[:, 0] - boot[:, 1]) / boot[:, 2])
        row.update(
            diff_ratio=(a - b) / ref,
            ratio_lo=r_lo,
            ratio_hi=r_hi,
            gap_closed=math.nan,
            gap_lo=math.nan,
            gap_hi=math.nan,
            separated=bool(hi < 0),
        )
    if (n_docs if min_docs is None else min_docs) < 2:  # one document: no interval to speak of
        row.update({k: math.nan for k in ("lo", "hi", "ratio_lo", "ratio_hi", "gap_lo", "gap_hi")}, separated=False)
    return row


def evaluate_claim(c: Claim, B: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Rows of one claim: every task, then Pile-weighted over the weighted tasks that have paired documents."""
    paired, rows, counts = {}, [], {}
    for task in sorted(c.columns):
        ll, nb, ids = pair_up(c.columns[task], c.universe[task])
        counts[task] = (len(ids), len(dict.fromkeys(c.universe[task])) - len(ids))
        if ids:
            paired[task] = (ll, nb)
    boots, wboot = paired_bootstrap(paired, B, rng)
    for task in sorted(c.columns):
        n, excl = counts[task]
        point = bpb(*paired[task]) if task in paired else None
        rows.append(_row(c, task, point, boots.get(task), n, excl))  # type: ignore[arg-type]
    if wboot is not None:
        weighted = [t for t in paired if t in PILE_WEIGHTS]
        point = pile_weighted({t: bpb(*paired[t]) for t in weighted})
        n = sum(counts[t][0] for t in weighted)
        excl = sum(counts[t][1] for t in c.columns if t in PILE_WEIGHTS)
        rows.append(_row(c, PILE_ROW, point, wboot, n, excl, min(counts[t][0] for t in weighted)))
    return rows


def _max_checkpoint(results: Results, model: str, method: str) -> int | None:
    """The largest checkpoint any document of ``method`` was evaluated at (over all tasks), or None."""
    if method == "interpolation":  # one pass scores every alpha: its checkpoint after mixing in is the record's k
        cps = [r["k"] for (m, me, _), recs in results.items() if (m, me) == (model, method) for r in recs]
    else:
        cps = [
            n
            for (m, me, _), recs in results.items()
            if (m, me) == (model, method)
            for r in recs
            for n in r["checkpoints"]
        ]
    return max(cps) if cps else None


def _ids(*record_sets: Records | None) -> list[str]:
    """Document ids of the record sets, in order of first appearance."""
    return list(dict.fromkeys(r["doc_id"] for recs in record_sets if recs for r in recs))


def build_claims(results: Results, models: Mapping[str, Mapping[str, Any]], n_shards: int | None = None) -> list[Claim]:
    """The claims whose inputs are among ``results`` (``{(model, method, task): records}`` with method
    ``ttt`` for the TTT runs): (a) TTT-NN after k < no TTT, (b) < in-context, (c) < interpolation (alpha on
    validation documents), (d) nearest-first <= farthest-first / batch, (e) full index < each fraction,
    (f) share of the gap to each untrained model closed, (g) (a) and (f) for every further trained model."""
    trained = [m for m, s in models.items() if s.get("train", True)]
    large = [m for m, s in models.items() if not s.get("train", True)]
    tasks = sorted({t for (_, _, t) in results})
    claims: list[Claim] = []
    first = next((m for m in trained if (_max_checkpoint(results, m, "ttt") or 0) > 0), None)
    for model in trained:
        k = _max_checkpoint(results, model, "ttt")
        if not k:
            continue
        own = {t: results[(model, "ttt", t)] for t in tasks if (model, "ttt", t) in results}
        tag = "" if model == first else "g"
        a = Claim(
            "g(a)" if tag else "a",
            (f"(a) for {model}: " if tag else "") + f"TTT-NN after {k} neighbours < no TTT",
            model,
            k,
            f"TTT-NN, {k} neighbours",
            "no TTT",
        )
        for t, recs in own.items():
            a.columns[t] = [measured(recs, k), measured(recs, 0), measured(recs, 0)]
            a.universe[t] = _ids(recs)
        claims.append(a)
        for big in large:
            f = Claim(
                "g(f)" if tag else "f",
                (f"(f) for {model}: " if tag else "")
                + f"share of the gap from {model} to {big} (no TTT) closed by TTT after {k} neighbours > 0",
                model,
                k,
                f"{model}, TTT-NN {k} neighbours",
                f"{big}, no TTT",
                gap=True,
            )
            for t, recs in own.items():
                if (big, "ttt", t) not in results:
                    continue
                big_recs = results[(big, "ttt", t)]
                f.columns[t] = [measured(recs, k), measured(big_recs, 0), measured(recs, 0)]
                f.universe[t] = _ids(recs, big_recs)
            if f.columns:
                claims.append(f)
        claims += _method_claims(results, model, own, tasks, n_shards)
    return claims


def _method_claims(
    results: Results, model: str, own: Mapping[str, Records], tasks: Sequence[str], n_shards: int | None
) -> list[Claim]:
    """Claims (b)-(e) of one trained model: TTT-NN (``own``: its records per task) against each baseline and
    ablation it ran, at that method's k."""

    claims: list[Claim] = []
    methods = sorted({me for (m, me, _) in results if m == model and me != "ttt"})
    for method in methods:
        k = _max_checkpoint(results, model, method)
        if not k:
            continue
        if method == "incontext":
            c = Claim("b", f"TTT-NN < in-context, both with {k} neighbours", model, k, f"TTT-NN, {k}", "in-context")
        elif method == "interpolation":
            c = Claim(
                "c",
                f"TTT-NN < interpolation (alpha chosen on validation documents), {k} neighbours",
                model,
                k,
                f"TTT-NN, {k}",
                "interpolation (alpha on validation)",
            )
        elif method.startswith("order-"):
            order = method.removeprefix("order-")
            name = {"farthest": "farthest-first", "batch": "all neighbours as one batch of steps"}.get(order, order)
            c = Claim("d", f"nearest-first <= {name} after {k} neighbours", model, k, "nearest-first", name)
        elif method.startswith("index_size-"):
            n = int(method.removeprefix("index_size-"))
            full = f"full index ({n_shards} shards)" if n_shards else "full index"
            c = Claim("e", f"{full} < {n} shard(s), after {k} neighbours", model, k, full, f"{n} shard(s)")
        else:
            continue
        for t in tasks:
            recs, main = results.get((model, method, t)), own.get(t)
            if not recs or not main:
                continue
            if method == "interpolation":
                valid = results.get((model, "interpolation_valid", t))
                if not valid:
                    continue
                alpha = choose_alpha(valid)
                recs = [with_alpha(r, alpha) for r in recs]
                c.labels_b[t] = f"interpolation (alpha {alpha:g} on validation)"
            c.columns[t] = [measured(main, k), measured(recs, k), measured(main, 0)]
            # the baselines are about the TTT run's documents; the ablations only about those they ran on
            ablation = method.startswith(("order-", "index_size-"))
            c.universe[t] = _ids(recs) if ablation else _ids(main, recs)
        if c.columns:
            claims.append(c)
    return claims


def claims_table(
    results: Results,
    models: Mapping[str, Mapping[str, Any]],
    B: int = 1000,
    seed: int = 0,
    n_shards: int | None = None,
) -> pd.DataFrame:
    """Every claim whose inputs exist, per task and Pile-weighted; see the module docstring and docs/fidelity.md."""
    rng = np.random.default_rng(seed)
    claims = sorted(build_claims(results, models, n_shards), key=lambda c: CLAIM_ORDER.index(c.claim))  # stable
    rows = [row for c in claims for row in evaluate_claim(c, B, rng)]
    return pd.DataFrame(rows, columns=COLUMNS)


def claims_from_files(
    paths: Sequence[str],
    models: Mapping[str, Mapping[str, Any]],
    B: int = 1000,
    seed: int = 0,
    n_shards: int | None = None,
) -> pd.DataFrame:
    """The claims table from the result files ``ttt/<run>/<model>/<task>.jsonl`` and
    ``baselines/<run>/<model>/<method>/<task>.jsonl``."""
    return claims_table(load_method_results(paths), models, B, seed, n_shards)
