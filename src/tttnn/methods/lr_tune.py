"""Choosing TTT's learning rate per model on held-out documents (``ttt.lr: auto``).

The TTT loop runs on the validation documents (the ones interpolation's alpha is chosen on, never a test
document) once per rate of a log grid, up to ``k`` neighbours; the rate with the lowest Pile-weighted bits per
byte after ``k`` neighbours wins, near-ties going to the smaller rate (a smaller step is the safer choice when the
held-out documents cannot tell two rates apart). The paper chose its rates per model by hand (2e-5 for GPT-2,
5e-6 for GPT-Neo); a rate that suits one model family can make another worse (Gemma 3 at SmolLM2's 1e-4).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tttnn.core.settings import LRTuneSettings

log = logging.getLogger(__name__)

#: the row of the table that the choice is made on (the tables' name for it, see tttnn.report.summarize)
WEIGHTED = "pile-weighted"
#: the row used instead when no task has a Pile weight: every document's bytes pooled
POOLED = "all"
COLUMNS = ["model", "lr", "task", "n_neighbors", "n_docs", "bits_per_byte", "chosen"]


def score_table(records: Mapping[float, Sequence[Mapping[str, Any]]], model: str) -> pd.DataFrame:
    """Per rate and checkpoint: each task's bits per byte (ratio of sums over its documents) and the Pile-weighted
    value (or, when no task has a Pile weight, all documents pooled). ``records`` are TTT records with a task."""
    from tttnn.data.tasks import PILE_WEIGHTS
    from tttnn.report.stats import aggregate, pile_weighted

    rows = []
    for lr, recs in sorted(records.items()):
        by = pd.DataFrame(
            [
                {"task": r["task"], "n": n, "ll": ll, "bytes": r["n_bytes"], "words": r["n_words"]}
                for r in recs
                for n, ll in zip(r["checkpoints"], r["loglik"])
            ]
        )
        for n, g in by.groupby("n", sort=True):
            per_task = {}
            for task, t in g.groupby("task", sort=True):
                if all(math.isfinite(x) for x in t["ll"]):
                    per_task[task] = aggregate(t["ll"], t["bytes"], t["words"])["bits_per_byte"]
                else:  # the rate diverged: the worst score, never chosen (before training it is an error upstream)
                    log.warning("%s: non-finite log-likelihood at lr %g, task %s, n = %d", model, lr, task, n)
                    per_task[task] = math.inf
                rows.append([model, lr, task, int(n), len(t), per_task[task]])
            if any(t in PILE_WEIGHTS for t in per_task):
                rows.append([model, lr, WEIGHTED, int(n), len(g), pile_weighted(per_task)])
            elif all(math.isfinite(x) for x in g["ll"]):
                rows.append([model, lr, POOLED, int(n), len(g), aggregate(g["ll"], g["bytes"], g["words"])["bits_per_byte"]])
            else:
                rows.append([model, lr, POOLED, int(n), len(g), math.inf])
    return pd.DataFrame(rows, columns=COLUMNS[:-1])


def choose(table: pd.DataFrame, k: int, tolerance: float) -> float:
    """The smallest rate whose score after ``k`` neighbours is within ``(1 + tolerance)`` of the best score."""
    at_k = table[(table["n_neighbors"] == k) & table["task"].isin([WEIGHTED, POOLED])].sort_values("lr")
    if at_k.empty:
        raise ValueError(f"no scores after {k} neighbours to choose a rate from")
    best = float(at_k["bits_per_byte"].min())
    return float(at_k.loc[at_k["bits_per_byte"] <= best * (1 + tolerance), "lr"].iloc[0])


def mark_chosen(table: pd.DataFrame, chosen: float) -> pd.DataFrame:
    """The table with its ``chosen`` column: True on every row of the chosen rate."""
    return table.assign(chosen=table["lr"] == chosen)[COLUMNS]


def chosen_lr(path: str | Path) -> float:
    """The rate a ``tune_lr`` table chose (the rows marked ``chosen``)."""
    try:
        table = pd.read_csv(path)
        rates = set(table.loc[table["chosen"].astype(bool), "lr"].astype(float))
    except (OSError, KeyError, ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: not a learning-rate table of tune_lr ({err}); delete it to tune again") from err
    if len(rates) != 1:
        raise ValueError(f"{path}: {len(rates)} rates marked chosen, expected 1; delete it to tune again")
    return rates.pop()


def tune(
    model_dir: str,
    neighbors_paths: Sequence[str],
    valid_paths: Sequence[str],
    ttt: dict[str, Any],
    settings: LRTuneSettings,
    model_name: str,
    query: str = "full",
    split_max_tokens: int = 1024,
    device: str = "auto",
) -> pd.DataFrame:
    """Run TTT on the validation documents once per rate of the grid and return the table with the choice marked.

    One model load for every rate; documents advance in lock-step when ``ttt.batch_documents`` > 1 (the batched
    runner, same results). Each document is evaluated at 0 and ``k`` neighbours only.
    """
    from tttnn.core.settings import TTTConfig
    from tttnn.core.ttt import TTTRunner
    from tttnn.models.load import load_model
    from tttnn.runs import load_documents

    docs = []
    for nb, valid in zip(neighbors_paths, valid_paths, strict=True):
        docs.extend(load_documents(nb, valid, query, split_max_tokens)[: settings.n_docs])
    if not docs:
        raise ValueError(f"{model_name}: no validation documents to tune the learning rate on (corpus.n_valid_docs)")
    base = {k: v for k, v in ttt.items() if k not in ("lr", "lr_source", "k", "eval_at", "pad_checkpoints")}
    cfg = TTTConfig(**base, lr=settings.grid[0], k=settings.k, eval_at=[0, settings.k], pad_checkpoints=True)
    model, tok = load_model(model_dir, device=device, dtype="float32")
    if cfg.batch_documents > 1:
        from tttnn.core.batched import BatchedTTTRunner

        runner: TTTRunner = BatchedTTTRunner(model, tok, cfg, cfg.batch_documents)
    else:
        runner = TTTRunner(model, tok, cfg)
    records: dict[float, list[dict[str, Any]]] = {}
    try:
        for lr in settings.grid:
            runner.cfg = cfg.model_copy(update={"lr": lr})  # reset() builds each document's AdamW from cfg.lr
            t0 = time.perf_counter()
            recs = []
            for i in range(0, len(docs), cfg.batch_documents):
                batch = docs[i : i + cfg.batch_documents]
                recs.extend({**r, "task": d.extra["task"]} for d, r in zip(batch, runner.run_batch(batch)))
                log.info("lr %g: %d of %d documents done", lr, len(recs), len(docs))
            records[lr] = recs
            log.info("lr %g: %d documents x %d neighbours in %.0f s", lr, len(docs), settings.k, time.perf_counter() - t0)
    finally:
        runner.restore_weights()
    table = score_table(records, model_name)
    chosen = choose(table, settings.k, settings.tolerance)
    at_k = table[(table["n_neighbors"] == settings.k) & table["task"].isin([WEIGHTED, POOLED])]
    log.info("scores after %d neighbours: %s; chosen: %g", settings.k, dict(zip(at_k["lr"], at_k["bits_per_byte"])), chosen)
    start = table[(table["n_neighbors"] == 0) & table["task"].isin([WEIGHTED, POOLED])]["bits_per_byte"].iloc[0]
    if at_k["bits_per_byte"].min() >= start:
        log.warning("%s: no rate of the grid improved the validation documents (%.4f bpb before TTT)", model_name, start)
    return mark_chosen(table, chosen)
