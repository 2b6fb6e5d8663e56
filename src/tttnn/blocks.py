"""Jobs within a cluster's time limit: a task's documents cut into blocks, one job and one file each, merged
back in document order into the task's file (byte for byte what one job writes, timings aside).

Documents are independent (per-document seeds, a fresh model and optimizer each), so a block's records equal
the unsplit job's; the fingerprint of every record is the task's, not the block's, so a block job reuses any
finished record of its documents found in the task's file or its sibling blocks (a new block size costs only
model loads).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tttnn import jsonl
from tttnn.config import ConfigError
from tttnn.io import atomic_path
from tttnn.jobs import cluster_settings
from tttnn.methods.registry import ABLATIONS

log = logging.getLogger(__name__)

# the keys that split the jobs that cannot be cut into blocks, named by the plan when one outgrows the limit
SPLIT_KEYS = {
    "build_corpus_shard": "corpus.n_shards",
    "chunk": "corpus.n_shards",
    "embed": "corpus.n_shards (or a faster embedder.dtype)",
    "index": "corpus.n_shards",
    "search_shard": "corpus.n_shards",
    "tune_lr": "ttt.lr_tune.n_docs or ttt.lr_grid",
    "prepare_model": "nothing (one model per job): ask the partition for longer",
    "build_corpus": "nothing: ask the partition for longer",
}


def blocks_enabled(config: dict[str, Any]) -> bool:
    """True when per-document jobs are cut into blocks: ``cluster.block_docs`` or ``cluster.max_runtime`` set."""
    c = cluster_settings(config)
    return c["block_docs"] is not None or c["max_runtime"] is not None


def docs_per_block(
    limit_min: float, fill: float, doc_s: float, overhead_s: float, multiple: int = 1
) -> int:
    """Documents per block so a block's planned time (start-up and model load, then its documents) fits
    ``fill`` x the limit; at least one, and a multiple of ``multiple`` (documents trained in lock-step)."""
    budget = fill * limit_min * 60 - overhead_s
    n = int(budget // doc_s) if doc_s > 0 else 10**9
    n = max(multiple, n - n % multiple)
    return max(1, n)


def check_blocks(config: dict[str, Any]) -> None:
    """Refuse blocks for a model whose documents are not independent: the authors' carried optimizer state
    (``ttt.reset_optimizer: false``) ties each document to those before it, so a block would change results.
    A hand-set block size must hold whole lock-step batches (``ttt.batch_documents``)."""
    if not blocks_enabled(config):
        return
    from tttnn.config import ttt_config

    size = cluster_settings(config)["block_docs"]
    for model, spec in config["models"].items():
        if not spec.get("train", True):
            continue
        cfg = ttt_config(config, model)
        if not cfg.reset_optimizer:
            raise ConfigError(
                f"models.{model}: ttt.reset_optimizer is false, so each document depends on the ones before it; "
                "cluster.max_runtime / cluster.block_docs would change its results: unset them or reset the optimizer"
            )
        if size is not None and cfg.batch_documents > 1 and size % cfg.batch_documents:
            raise ConfigError(
                f"cluster.block_docs = {size} is not a multiple of models.{model}'s ttt.batch_documents = "
                f"{cfg.batch_documents} (documents trained in lock-step are one batch)"
            )


def block_ranges(n_docs: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of each block of ``size`` documents over a task's ``n_docs`` (one block when none)."""
    size = max(1, size)
    return [(s, min(s + size, n_docs)) for s in range(0, max(n_docs, 1), size)]


def block_file(results_dir: str, stem: str, block: int | str) -> str:
    """``<results>/blocks/<stem>/<block>.jsonl``: one block of the task file ``<results>/<stem>.jsonl``."""
    return os.path.join(results_dir, "blocks", stem, f"{block}.jsonl")


def task_file(block_path: str | os.PathLike, results_dir: str) -> str:
    """The task file a block file is merged into (the inverse of :func:`block_file`)."""
    prefix = os.path.normpath(os.path.join(results_dir, "blocks"))
    stem = os.path.relpath(os.path.dirname(os.path.normpath(block_path)), prefix)
    if stem.startswith(".."):
        raise ValueError(f"{block_path} is not a block file under {prefix}")
    return os.path.join(results_dir, stem + ".jsonl")


def reuse_sources(block_path: str | os.PathLike, results_dir: str) -> list[Path]:
    """Files whose finished records a block job may take instead of recomputing them: the task's file (and its
    partial) and every other block of the task (and their partials), of any earlier block size."""
    block = Path(block_path)
    task_path = task_file(block_path, results_dir)
    paths = [Path(task_path), Path(f"{task_path}.partial")]
    if block.parent.is_dir():
        paths += sorted(p for p in block.parent.iterdir() if p.name.endswith((".jsonl", ".jsonl.partial")))
    return [p for p in paths if p != block and p != Path(f"{block}.partial") and p.is_file()]


def merge_blocks(parts: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> int:
    """Concatenate a task's block files, in block order, into its file (written atomically); refuse blocks
    computed under different settings or a document twice. Returns the number of records."""
    from tttnn.core.resume import check_consistent

    records, seen = [], set()
    for p in parts:
        recs = jsonl.read_records(p)
        for r in recs:
            if r["doc_id"] in seen:
                raise ValueError(f"{p}: document {r['doc_id']} is in an earlier block too")
            seen.add(r["doc_id"])
        records += recs
    check_consistent(records, str(out_path))
    with atomic_path(out_path) as tmp, open(tmp, "wb") as out:
        for p in parts:
            out.write(Path(p).read_bytes())
    log.info("merged %d blocks (%d documents) into %s", len(parts), len(records), out_path)
    return len(records)


def block_size(config: dict[str, Any], planned: dict[tuple[str, str], int], rule: str, model: str) -> int | None:
    """Documents per block of a rule's jobs for ``model`` (None: no blocks)."""
    if not blocks_enabled(config):
        return None
    return cluster_settings(config)["block_docs"] or planned[(rule, model)]


def n_blocks(n_docs: int, size: int | None) -> int:
    """How many blocks a task of ``n_docs`` documents is cut into (1 without blocks)."""
    return len(block_ranges(n_docs, size)) if size else 1


# the method rules that run on the first methods.n_docs documents only: the registry's ablations by rule name
ABLATION_RULES = tuple(a.rstrip("-") for a in ABLATIONS)


def rule_docs(config: dict[str, Any], rule: str, model: str) -> int:
    """Documents per task a per-document rule's job runs on for ``model`` (the count the blocks cut)."""
    corpus = config["corpus"]
    if rule == "interpolation_valid":
        return int(corpus.get("n_valid_docs") or 0)
    n = int(corpus["n_test_docs"])
    cap = config["models"][model].get("n_docs") if rule in ("ttt", "evaluate") else None
    if rule in ABLATION_RULES:
        cap = (config.get("methods") or {}).get("n_docs")
    return min(n, cap) if cap else n


