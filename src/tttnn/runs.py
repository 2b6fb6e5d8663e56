"""One function per model step: prepare a model, and run TTT or a method over a task's documents (or one block
of them), resumable, one JSONL line per document. The Snakemake scripts only pass paths and config sections here."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tttnn.config import section_name
from tttnn.methods.registry import ABLATIONS, NO_TRAINING, method_runner
from tttnn.steps import query_texts

log = logging.getLogger(__name__)


def prepare_model(
    source: str | dict[str, Any],
    out_dir: str,
    join_dir: str | None = None,
    dtype: str = "float32",
    config: dict[str, Any] | None = None,
    model: str | None = None,
) -> None:
    """A model spec (hub id, local dir, GGUF, GGUF split across package files, joined into ``join_dir``)
    -> a plain local model directory (weights stored in ``dtype``) with a sha256 manifest.

    With the workflow ``config`` and the ``model``'s name, every length setting of that model is checked
    against its position limit as soon as the model's config is read, before anything is written.
    """
    from tttnn.config import check_lengths
    from tttnn.models.load import prepare

    def check(limit: int | None) -> None:
        if config is not None and model is not None:
            check_lengths(config, model, limit)

    t0 = time.perf_counter()
    prepare(source, out_dir, join_dir=join_dir, dtype=dtype, check=check)
    log.info("prepared %s in %s (%.1f s)", source, out_dir, time.perf_counter() - t0)


def load_documents(neighbors_path: str | None, test_path: str, query: str = "full", split_max_tokens: int = 1024):
    """A task's test documents (the evaluated text under ``retrieve.query``) with their neighbours in rank order."""
    from tttnn.core.resume import Document
    from tttnn.core.ttt import Neighbor

    test = pd.read_parquet(test_path)
    nb = pd.read_parquet(neighbors_path) if neighbors_path else None
    _, eval_texts = query_texts(test, {"query": query, "split_max_tokens": split_max_tokens})
    groups = {q: g.sort_values("rank") for q, g in nb.groupby("query_id")} if nb is not None else {}
    docs = []
    for (doc_id, task), text in zip(zip(test["doc_id"], test["task"]), eval_texts):
        g = groups.get(doc_id)
        neighbors = (
            [] if g is None else [Neighbor(c, t, float(d)) for c, t, d in zip(g["chunk_id"], g["text"], g["distance"])]
        )
        secs = float(g["search_seconds"].iloc[0]) if g is not None else 0.0
        docs.append(Document(doc_id, text, neighbors, {"task": task, "retrieve_seconds": secs}))
    return docs


def _block_of(docs: list, block: Sequence[int] | None) -> list:
    """The documents of one block ([start, stop) of the task's), or all of them."""
    return docs if block is None else docs[block[0] : block[1]]


def _reuse(out: str, block: Sequence[int] | None, results_dir: str | None) -> list:
    """A block job's sources of finished records (its task's file, the task's other blocks); none otherwise."""
    if block is None or results_dir is None:
        return []
    from tttnn.blocks import reuse_sources

    return reuse_sources(out, results_dir)


def _as_list(x: str | Sequence[str] | None, n: int) -> list:
    if x is None or isinstance(x, str):
        return [x] * n
    return list(x)


def run_ttt(
    model_dir: str,
    neighbors_paths: str | Sequence[str],
    test_paths: str | Sequence[str],
    out_paths: str | Sequence[str],
    ttt: dict[str, Any],
    query: str = "full",
    split_max_tokens: int = 1024,
    device: str = "auto",
    n_docs: int | None = None,
    block: Sequence[int] | None = None,
    results_dir: str | None = None,
) -> None:
    """TTT-NN (or, with k = 0, plain evaluation) on every test document of each task (the first ``n_docs``
    when set), resumable; one JSONL line per document; the model is loaded once for all the tasks given.
    With ``block`` = [start, stop], only those documents of the task (one block file under ``results_dir``)."""
    from tttnn.core.resume import finalize, provenance
    from tttnn.core.ttt import TTTConfig, TTTRunner, run_task
    from tttnn.models.load import load_model

    outs = _as_list(out_paths, 1)
    tests, nbs = _as_list(test_paths, len(outs)), _as_list(neighbors_paths, len(outs))
    cfg = TTTConfig(**ttt)
    # the fingerprint holds what determines results, not how fast they come (eval batch, batch_documents, ...)
    settings = {**cfg.result_settings(), "query": query, "split_max_tokens": split_max_tokens}
    # weights load in float32; the runner applies ttt.dtype (autocast, or bf16 weights with a float32 master)
    model, tok = load_model(model_dir, device=device, dtype="float32")
    if cfg.batch_documents > 1 and cfg.k > 0:
        from tttnn.core.batched import BatchedTTTRunner

        runner: TTTRunner = BatchedTTTRunner(model, tok, cfg, cfg.batch_documents)
    else:
        runner = TTTRunner(model, tok, cfg)
    for nb, test, out in zip(nbs, tests, outs, strict=True):
        docs = _block_of(load_documents(nb, test, query, split_max_tokens)[:n_docs], block)
        prov = provenance(settings, {"model": model_dir, "neighbors": nb, "test": test})
        log.info("TTT on %d documents of %s: %s", len(docs), Path(test).stem, settings)
        recs = run_task(
            docs, out, runner, prov, batch_size=cfg.batch_documents, finalize=False, reuse=_reuse(out, block, results_dir)
        )
        log.info("done: %d documents", len(recs))
    finalize(outs)


def run_method(
    method: str,
    model_dir: str,
    neighbors_paths: str | Sequence[str] | None,
    test_paths: str | Sequence[str],
    out_paths: str | Sequence[str],
    ttt: dict[str, Any],
    methods: dict[str, Any],
    retrieve: dict[str, Any],
    device: str = "auto",
    block: Sequence[int] | None = None,
    results_dir: str | None = None,
) -> None:
    """One baseline or ablation on the test documents of each task given (the ablations on the first
    ``methods.n_docs``, evaluated at ``methods.eval_at``, default 0 and k), resumable like TTT; the model
    is loaded once for all tasks, and no task's file is published before all are done. With ``block``, only
    those documents of the one task (see :func:`run_ttt`)."""
    from tttnn.core.resume import finalize, provenance, run_task
    from tttnn.core.settings import TTTConfig
    from tttnn.models.load import load_model

    outs = _as_list(out_paths, 1)
    tests, nbs = _as_list(test_paths, len(outs)), _as_list(neighbors_paths, len(outs))
    cfg = TTTConfig(**ttt)
    if methods.get("k"):
        if cfg.k and methods["k"] > cfg.k:  # refused at config check too; never clamp without a word
            raise ValueError(f"methods.k = {methods['k']} exceeds retrieve.k = {cfg.k}")
        cfg = cfg.model_copy(update={"k": methods["k"] if cfg.k else 0})
    ablation = method.startswith(ABLATIONS)
    if ablation:
        cfg = cfg.model_copy(update={"eval_at": methods.get("eval_at") or [0, cfg.k]})
    # dynamic evaluation splits the whole document itself, into the part it trains on and the part it scores
    query = "full" if method == "dynamic_eval" else retrieve.get("query", "full")
    section = methods.get(section_name(method)) or {}
    result = cfg.result_settings()
    if method in NO_TRAINING:  # these never take a step: the rate is not theirs (and not in their params)
        result = {k: v for k, v in result.items() if k not in ("lr", "lr_source")}
    settings = {
        **result,
        "method": method,
        "method_settings": section,
        "query": query,
        "split_max_tokens": retrieve.get("split_max_tokens", 1024),
        "n_docs": methods.get("n_docs") if ablation else None,
    }
    model, tok = load_model(model_dir, device=device, dtype="float32")
    runner = method_runner(method, model, tok, cfg, methods, retrieve)
    for nb, test, out in zip(nbs, tests, outs, strict=True):
        docs = load_documents(nb, test, query, retrieve.get("split_max_tokens", 1024))
        if ablation and methods.get("n_docs"):
            docs = docs[: methods["n_docs"]]
        docs = _block_of(docs, block)
        prov = provenance(settings, {"model": model_dir, "neighbors": nb, "test": test})
        log.info("%s on %d documents of %s: %s", method, len(docs), Path(test).stem, settings)
        recs = run_task(docs, out, runner.run_batch, prov, finalize=False, reuse=_reuse(out, block, results_dir))
        log.info("done: %d documents", len(recs))
    finalize(outs)
