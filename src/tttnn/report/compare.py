"""Tables that set TTT-NN beside the baselines and ablations: methods (per task and Pile-weighted, with
bootstrap CIs), neighbour order curves, and index size. Same ratio-of-sums bpb as every other table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tttnn import jsonl
from tttnn.core.resume import check_consistent
from tttnn.data.tasks import PILE_WEIGHTS
from tttnn.report.stats import aggregate, choose_alpha, oracle_alpha, pile_weighted, with_alpha
from tttnn.report.summarize import PILE_ROW, aligned_logliks, bootstrap_bpb

Records = list[dict[str, Any]]

LABELS = {
    "none": "no TTT",
    "ttt-nn": "TTT-NN",
    "incontext": "in-context",
    "interpolation": "interpolation (alpha on validation docs)",
    "interpolation-oracle": "interpolation (alpha on test docs, oracle)",
    "dynamic_eval": "dynamic evaluation (2nd part)",
    "none-rest": "no TTT (2nd part)",
}


# columns of the tables, written (with their header) even when an ablation did not run
ORDER_COLUMNS = [
    "model",
    "task",
    "order",
    "n_neighbors",
    "bits_per_byte",
    "ci_low",
    "ci_high",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "n_docs",
]
INDEX_SIZE_COLUMNS = [
    "model",
    "task",
    "n_shards",
    "fraction",
    "bits_per_byte",
    "ci_low",
    "ci_high",
    "ratio",
    "mean_distance",
    "n_docs",
]
DISTANCE_COLUMNS = ["model", "task", "n_shards", "fraction", "rank", "mean_distance"]


def load_method_results(paths: Sequence[str]) -> dict[tuple[str, str, str], Records]:
    """``{(model, method, task): records}`` from ``baselines/<run>/<model>/<method>/<task>.jsonl`` and
    ``ttt/<run>/<model>/<task>.jsonl`` (method ``ttt``)."""
    out = {}
    for p in map(Path, paths):
        if len(p.parts) >= 5 and p.parts[-5] == "baselines":
            model, method = p.parent.parent.name, p.parent.name
        else:
            model, method = p.parent.name, "ttt"
        recs = jsonl.read_records(p)
        if not recs:
            raise ValueError(f"{p}: no documents")
        check_consistent(recs, str(p))
        out[(model, method, p.stem)] = recs
    return out


def _bpb_rows(
    values: dict[str, tuple[np.ndarray, np.ndarray]], B: int, rng: np.random.Generator, base: dict[str, Any]
) -> list[dict[str, Any]]:
    """Rows per task (and Pile-weighted) from per-document (loglik, bytes) arrays; bootstrap CIs."""
    rows, boots = [], {}
    for task, (ll, nb) in sorted(values.items()):
        bpb = aggregate(ll, nb, [1] * len(nb))["bits_per_byte"]
        boot = bootstrap_bpb(ll[:, None], nb, B, rng)[:, 0]
        boots[task] = boot
        rows.append(
            {
                **base,
                "task": task,
                "bits_per_byte": bpb,
                "ci_low": np.quantile(boot, 0.025),
                "ci_high": np.quantile(boot, 0.975),
                "n_docs": len(nb),
                "n_bytes": int(nb.sum()),
            }
        )
    weighted = [t for t in values if t in PILE_WEIGHTS]
    if weighted:
        wb = pile_weighted({t: boots[t] for t in weighted})
        point = pile_weighted({r["task"]: r["bits_per_byte"] for r in rows if r["task"] in weighted})
        rows.append(
            {
                **base,
                "task": PILE_ROW,
                "bits_per_byte": point,
                "ci_low": np.quantile(wb, 0.025),
                "ci_high": np.quantile(wb, 0.975),
                "n_docs": sum(len(values[t][1]) for t in weighted),
                "n_bytes": int(sum(values[t][1].sum() for t in weighted)),
            }
        )
    return rows


def _at(recs: Records, pick: Callable[[list[int]], int]) -> tuple[np.ndarray, np.ndarray]:
    """(loglik, bytes) per document at the checkpoint ``pick`` chooses from the task's checkpoints."""
    cps, ll = aligned_logliks(recs)
    return ll[:, cps.index(pick(cps))], np.array([r["n_bytes"] for r in recs], dtype=float)


def _same(a: dict[str, tuple[np.ndarray, np.ndarray]], b: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether two per-task (loglik, bytes) sets hold the same documents' values (same tokens scored)."""
    return set(a) == set(b) and all(
        a[t][0].shape == b[t][0].shape and np.allclose(a[t][0], b[t][0], rtol=1e-9, atol=1e-9) for t in a
    )


def methods_table(
    results: dict[tuple[str, str, str], Records], B: int = 1000, seed: int = 0, k: int | None = None
) -> pd.DataFrame:
    """bpb per task, model and method: no TTT, TTT-NN, in-context, interpolation, dynamic evaluation;
    TTT-NN after ``k`` neighbours (the methods' k) where that checkpoint was evaluated, else after its last.

    Every row names its ``reference``: the no-TTT row measured on exactly the windows it scored (its own
    records' checkpoint 0). Where that differs from the main no-TTT row (in-context with its own
    ``max_length``; dynamic evaluation's second part), the reference is a row of its own.
    """

    def at_k(cps: list[int]) -> int:
        return max((c for c in cps if k is None or c <= k), default=max(cps))


    rng = np.random.default_rng(seed)
    rows = []
    models = sorted({m for m, _, _ in results})
    for model in models:
        per: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        own0: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # each method's own no-TTT values
        alphas: dict[tuple[str, str], float] = {}
        for (m, method, task), recs in sorted(results.items()):
            if m != model:
                continue
            if method == "ttt":
                per.setdefault("none", {})[task] = _at(recs, min)
                if max(recs[0]["checkpoints"]) > 0 or any(max(r["checkpoints"]) > 0 for r in recs):
                    per.setdefault("ttt-nn", {})[task] = _at(recs, at_k)
                    own0.setdefault("ttt-nn", {})[task] = _at(recs, min)
            elif method == "incontext":
                per.setdefault("incontext", {})[task] = _at(recs, max)
                own0.setdefault("incontext", {})[task] = _at(recs, min)
            elif method == "interpolation":
                valid = results.get((model, "interpolation_valid", task))
                if valid:
                    a = choose_alpha(valid)
                    alphas[("interpolation", task)] = a
                    per.setdefault("interpolation", {})[task] = _at([with_alpha(r, a) for r in recs], max)
                    own0.setdefault("interpolation", {})[task] = _at(recs, min)
                a = oracle_alpha(recs)
                alphas[("interpolation-oracle", task)] = a
                per.setdefault("interpolation-oracle", {})[task] = _at([with_alpha(r, a) for r in recs], max)
                own0.setdefault("interpolation-oracle", {})[task] = _at(recs, min)
            elif method == "dynamic_eval":
                per.setdefault("none-rest", {})[task] = _at(recs, min)
                per.setdefault("dynamic_eval", {})[task] = _at(recs, max)
        reference = {"none": "none", "none-rest": "none-rest", "dynamic_eval": "none-rest"}
        labels = dict(LABELS)
        for method, vals in own0.items():
            if "none" in per and _same(vals, {t: per["none"][t] for t in vals if t in per["none"]}):
                reference[method] = "none"
            else:  # scored on other windows (e.g. in-context's own max_length): its own reference row
                ref = f"none-{method}"
                per[ref], reference[method], reference[ref] = vals, ref, ref
                labels[ref] = f"no TTT ({LABELS.get(method, method)} windows)"
        refs_bpb = {
            (m, t): aggregate(ll, nb, [1] * len(nb))["bits_per_byte"]
            for m, v in per.items()
            for t, (ll, nb) in v.items()
        }
        order = [m for m in LABELS if m in per] + sorted(m for m in per if m not in LABELS)
        for method in order:
            new = _bpb_rows(per[method], B, rng, {"model": model, "method": method, "label": labels[method]})
            ref = reference.get(method, "none")
            for r in new:
                r["alpha"] = alphas.get((method, r["task"]), np.nan)
                r["reference"] = ref
                r["reference_bpb"] = refs_bpb.get((ref, r["task"]), np.nan)
            if ref in per:  # the Pile-weighted row's reference: the reference's own Pile-weighted value
                ref_rows = {x["task"]: x["bits_per_byte"] for x in _bpb_rows(per[ref], 10, rng, {})}
                for r in new:
                    r["reference_bpb"] = ref_rows.get(r["task"], r["reference_bpb"])
            for r in new:
                r["ratio"] = r["bits_per_byte"] / r["reference_bpb"] if r["reference_bpb"] else np.nan
            rows += new
    cols = [
        "task",
        "model",
        "method",
        "label",
        "bits_per_byte",
        "ci_low",
        "ci_high",
        "reference",
        "reference_bpb",
        "ratio",
        "n_docs",
        "n_bytes",
        "alpha",
    ]
    return pd.DataFrame(rows, columns=cols)


def _restrict(recs: Records, ids: Sequence[str], checkpoints: Sequence[int]) -> Records:
    """The main run's records of the ablation's documents, at the ablation's checkpoints (same docs, same n);
    a checkpoint the main run did not measure is left out, never taken from a neighbouring one."""
    by_id = {r["doc_id"]: r for r in recs}
    sub = [by_id[i] for i in ids]
    cps, ll = aligned_logliks(sub, checkpoints)
    return [{**r, "checkpoints": cps, "loglik": [float(x) for x in ll[i]]} for i, r in enumerate(sub)]


def _curve_rows(recs: Records, B: int, rng: np.random.Generator, base: dict[str, Any]) -> list[dict[str, Any]]:
    cps, ll = aligned_logliks(recs)
    nb = np.array([r["n_bytes"] for r in recs], dtype=float)
    boot = bootstrap_bpb(ll, nb, B, rng)
    rows = []
    for j, n in enumerate(cps):
        bpb = aggregate(ll[:, j], nb, [1] * len(nb))["bits_per_byte"]
        ratio = boot[:, j] / boot[:, 0]
        rows.append(
            {
                **base,
                "n_neighbors": n,
                "bits_per_byte": bpb,
                "ci_low": np.quantile(boot[:, j], 0.025),
                "ci_high": np.quantile(boot[:, j], 0.975),
                "ratio": bpb / (-ll[:, 0].sum() / (nb.sum() * np.log(2))),
                "ratio_ci_low": np.quantile(ratio, 0.025),
                "ratio_ci_high": np.quantile(ratio, 0.975),
                "n_docs": len(recs),
            }
        )
    return rows


def order_table(results: dict[tuple[str, str, str], Records], B: int = 1000, seed: int = 0) -> pd.DataFrame:
    """bpb against neighbours for nearest-first (the method), farthest-first and shuffled minibatches,
    on the same documents and at the same checkpoints."""
    rng = np.random.default_rng(seed)
    rows = []
    orders: dict[tuple[str, str], dict[str, Records]] = {}
    for (model, method, task), recs in sorted(results.items()):
        if method.startswith("order-"):
            orders.setdefault((model, task), {})[method.removeprefix("order-")] = recs
    for (model, task), by_order in sorted(orders.items()):
        first = next(iter(by_order.values()))
        main = results.get((model, "ttt", task))
        if main:
            cps = sorted({n for r in first for n in r["checkpoints"]})
            by_order = {"nearest": _restrict(main, [r["doc_id"] for r in first], cps), **by_order}
        for order, recs in by_order.items():
            rows += _curve_rows(recs, B, rng, {"model": model, "task": task, "order": order})
    return pd.DataFrame(rows, columns=ORDER_COLUMNS)


def index_size_table(
    results: dict[tuple[str, str, str], Records], n_shards: int, B: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bpb after k and mean neighbour distance against the number of shards searched,
    mean distance by neighbour rank per index size), on the same documents."""
    rng = np.random.default_rng(seed)
    rows, dist_rows = [], []
    sizes: dict[tuple[str, str], dict[int, Records]] = {}
    for (model, method, task), recs in results.items():
        if method.startswith("index_size-"):
            sizes.setdefault((model, task), {})[int(method.removeprefix("index_size-"))] = recs
    for (model, task), by_n in sorted(sizes.items()):
        first = next(iter(by_n.values()))
        ids = [r["doc_id"] for r in first]
        main = results.get((model, "ttt", task))
        if main:  # the full index: the TTT run on the same documents, at the ablation's k and its first k neighbours
            k = max(n for r in first for n in r["checkpoints"])
            by_n[n_shards] = [{**r, "distances": r.get("distances", [])[:k]} for r in _restrict(main, ids, [0, k])]
        for n, recs in sorted(by_n.items()):
            ll, nb = _at(recs, max)
            boot = bootstrap_bpb(ll[:, None], nb, B, rng)[:, 0]
            ll0, _ = _at(recs, min)
            dists = [d for r in recs for d in r.get("distances", []) if d is not None]
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "n_shards": n,
                    "fraction": n / n_shards,
                    "bits_per_byte": -ll.sum() / (nb.sum() * np.log(2)),
                    "ci_low": np.quantile(boot, 0.025),
                    "ci_high": np.quantile(boot, 0.975),
                    "ratio": ll.sum() / ll0.sum(),
                    "mean_distance": float(np.mean(dists)) if dists else np.nan,
                    "n_docs": len(recs),
                }
            )
            by_rank: dict[int, list[float]] = {}
            for r in recs:
                for rank, d in enumerate(r.get("distances", [])):
                    if d is not None:
                        by_rank.setdefault(rank, []).append(d)
            dist_rows += [
                {
                    "model": model,
                    "task": task,
                    "n_shards": n,
                    "fraction": n / n_shards,
                    "rank": rank,
                    "mean_distance": float(np.mean(v)),
                }
                for rank, v in sorted(by_rank.items())
            ]
    return pd.DataFrame(rows, columns=INDEX_SIZE_COLUMNS), pd.DataFrame(dist_rows, columns=DISTANCE_COLUMNS)
