"""One function per workflow step: read the step's input files, call the library, write its outputs.

The Snakemake scripts only pass paths and config sections to these, so every step can also be run
(and tested) without Snakemake.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tttnn.io import write_npy, write_parquet, write_text

log = logging.getLogger(__name__)


def split_heldout(test: pd.DataFrame, n_test: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per task, the first ``n_test`` sampled documents are the test set and the rest the validation set."""
    rank = test.groupby("task", sort=False).cumcount()
    return test[rank < n_test].reset_index(drop=True), test[rank >= n_test].reset_index(drop=True)


def build_corpus(
    corpus: dict[str, Any],
    out_train: Sequence[str],
    out_test: Sequence[str],
    out_valid: Sequence[str] = (),
    out_manifest: str | None = None,
) -> None:
    """Corpus source -> train shards, per-task test and validation files (in ``corpus.tasks`` order), manifest.

    Validation documents are sampled like test documents and held out of the index too; methods that
    tune a parameter (interpolation's alpha) choose it there, never on the test documents.
    """
    import json

    from tttnn.data.corpus import build_pile, drop_empty, write_shards
    from tttnn.data.minipile import build_minipile

    tasks = corpus["tasks"]
    n_test, n_valid = corpus["n_test_docs"], corpus.get("n_valid_docs", 0) if out_valid else 0
    bad: list[str] = []
    skipped_empty: dict[str, int] = {}
    if corpus["source"] == "minipile":
        train, test = build_minipile(
            tasks=tasks,
            n_test_docs=n_test + n_valid,
            max_train_docs=corpus["max_train_docs"],
            seed=corpus["seed"],
            **corpus.get("minipile", {}),
        )
    elif not out_train:  # the Pile's train shards are streamed by their own jobs (build_corpus_shard)
        from tttnn.data.corpus import COLUMNS, sample_pile_test

        train = pd.DataFrame(columns=COLUMNS)
        skip = corpus.get("skip_bad_records", False)
        test = sample_pile_test(
            corpus["pile"]["test"], tasks, n_test + n_valid, corpus["seed"], bad, skip, skipped_empty
        )
    else:
        pile = corpus["pile"]
        train, test = build_pile(
            pile["train"],
            pile["test"],
            tasks,
            n_test + n_valid,
            corpus["max_train_docs"],
            corpus["seed"],
            bad=bad,
            skip_bad=corpus.get("skip_bad_records", False),
            skipped_empty=skipped_empty,
        )
    train, empty_train = drop_empty(train, "train documents")
    test, empty_test = drop_empty(test, "test documents")
    test, valid = split_heldout(test, n_test)
    log.info(
        "%d train documents over %d shards; test documents per task: %s; validation: %s",
        len(train),
        len(out_train),
        test.groupby("task").size().to_dict(),
        valid.groupby("task").size().to_dict(),
    )
    write_shards(train, test, list(out_train), dict(zip(tasks, out_test)))
    if out_valid:
        write_shards(train.iloc[:0], valid, [], dict(zip(tasks, out_valid)))
    if out_manifest:
        manifest = {
            "train_docs": len(train) if out_train else "per shard: train/<shard>.json",
            "test_docs": test.groupby("task").size().to_dict(),
            "valid_docs": valid.groupby("task").size().to_dict(),
            # with shard jobs (the Pile streamed), this job reads only the test split: each train shard's skipped
            # records are in its own train/<shard>.json, and this count is the test split's
            "skipped_bad_records": {
                "count": len(bad),
                "where": bad[:100],
                "split": "train and test" if out_train else "test only; train: per shard, train/<shard>.json",
            },
            # empty index documents dropped; empty test documents dropped, and passed over while sampling (per task)
            "dropped_empty": {"train": empty_train, "test": empty_test, "test_skipped_in_sampling": skipped_empty},
        }
        write_text(json.dumps(manifest, indent=1), out_manifest)


def build_corpus_shard(corpus: dict[str, Any], shard: int, out_path: str, out_stats: str | None = None) -> None:
    """One train shard of a Pile source, streamed from its own file(s) into parquet row groups, and its counts.

    ``corpus`` holds only what decides the shard's documents: ``pile.train``, ``n_shards``, ``max_train_docs``
    (a cap over all shards: each keeps its :func:`tttnn.data.corpus.shard_quota`) and ``skip_bad_records``.
    """
    import json

    from tttnn.data.corpus import stream_pile_shard

    bad: list[str] = []
    stats = stream_pile_shard(
        corpus["pile"]["train"],
        shard,
        corpus["n_shards"],
        out_path,
        corpus.get("max_train_docs"),
        bad,
        corpus.get("skip_bad_records", False),
    )
    stats["skipped_bad_records"] = {"count": len(bad), "where": bad[:100]}
    if out_stats:
        write_text(json.dumps(stats, indent=1), out_stats)


def chunk_shard(
    in_path: str,
    out_path: str,
    chunk: dict[str, Any],
    tokenizer_spec: str,
    batch_docs: int = 500,
    group_rows: int = 1000,
) -> None:
    """Documents of one shard -> retrieval chunks, streamed: ``batch_docs`` documents in memory at a time, written
    in row groups of ``group_rows`` chunks (small, so that a neighbour's text is later read by its row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tttnn.data.chunk import CHUNK_COLUMNS, chunk_documents
    from tttnn.io import atomic_path
    from tttnn.models.load import resolve_spec

    tokenizer = None
    if chunk.get("mode", "document") == "window":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_spec(tokenizer_spec))
    schema = pa.schema([(c, pa.int64() if c == "n_tokens" else pa.string()) for c in CHUNK_COLUMNS])
    n_docs = n_chunks = n_tokens = 0
    with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in pq.ParquetFile(in_path).iter_batches(batch_size=batch_docs, columns=["doc_id", "task", "text"]):
            docs = batch.to_pandas()
            out = chunk_documents(
                docs, chunk.get("mode", "document"), tokenizer, chunk.get("size", 256), chunk.get("stride")
            )
            if len(out):
                writer.write_table(pa.Table.from_pandas(out, schema=schema, preserve_index=False), group_rows)
            n_docs, n_chunks, n_tokens = n_docs + len(docs), n_chunks + len(out), n_tokens + int(out["n_tokens"].sum())
    log.info("%d documents -> %d chunks (mean %.0f tokens)", n_docs, n_chunks, n_tokens / max(n_chunks, 1))


def query_texts(test: pd.DataFrame, retrieve: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(query texts, evaluated texts) of a task's test documents under ``retrieve.query``."""
    from tttnn.data.chunk import split_query

    pairs = [
        split_query(t, retrieve.get("query", "full"), retrieve.get("split_max_tokens", 1024)) for t in test["text"]
    ]
    return [q for q, _ in pairs], [e for _, e in pairs]


def embed_files(
    in_paths: Sequence[str],
    out_paths: Sequence[str],
    embedder: dict[str, Any],
    column: str,
    retrieve: dict[str, Any] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
) -> None:
    """Embed parquet files' ``text`` columns (``column='query'``: the documents' query texts), one model load.

    ``batch_size`` and ``device`` (else ``embedder``'s) change speed, not the vectors. Texts of a shard
    (``column='text'``) are embedded in resumable blocks into the .npy on disk; query sets (small) at once.
    """
    from tttnn.retrieval.embed import Embedder, embed_parquet_blocks

    emb = Embedder(
        embedder["path"],
        embedder.get("kind", "sentence-transformers"),
        embedder.get("max_seq_length", 256),
        device or embedder.get("device", "auto"),
        embedder.get("tokenizer"),
        embedder.get("dtype", "float32"),
    )
    batch_size = batch_size or embedder.get("batch_size", 64)
    for in_path, out_path in zip(in_paths, out_paths, strict=True):
        if column == "text":
            embed_parquet_blocks(emb, in_path, out_path, batch_size)
            continue
        df = pd.read_parquet(in_path)
        texts = query_texts(df, retrieve or {})[0] if column == "query" else df["text"].tolist()
        t0 = time.perf_counter()
        vec = emb.encode(texts, batch_size)
        dt = time.perf_counter() - t0
        log.info(
            "%s: embedded %d texts in %.1f s (%.1f texts/s), dim %d",
            in_path,
            len(texts),
            dt,
            len(texts) / max(dt, 1e-9),
            vec.shape[1],
        )
        write_npy(vec, out_path)


def index_shard(in_path: str, out_path: str, index: dict[str, Any]) -> None:
    """Embeddings of one shard -> a saved faiss index."""
    import faiss

    from tttnn.io import atomic_path
    from tttnn.retrieval.index import NpyRows, build_index

    vec = NpyRows(in_path)  # read from disk block by block: memory is the index, not the embeddings as well
    t0 = time.perf_counter()
    idx = build_index(vec, index.get("factory", "Flat"), index.get("train_size", 100_000))
    log.info("built %s over %d vectors in %.2f s", index.get("factory", "Flat"), idx.ntotal, time.perf_counter() - t0)
    with atomic_path(out_path) as tmp:
        faiss.write_index(idx, str(tmp))


def search_shard(
    index_path: str,
    chunks_path: str,
    queries_paths: Sequence[str],
    test_paths: Sequence[str],
    docs_path: str | None,
    out_paths: Sequence[str],
    retrieve: dict[str, Any],
    nprobe: int,
    shard: str,
    vectors_path: str | None = None,
    rerank: int | None = None,
    gpus: int = 0,
) -> None:
    """The map step: one shard searched for the queries of every task (and split) in one batched call, the
    index loaded once (on ``gpus`` GPUs when set; re-ranked exactly from the shard's on-disk embeddings when
    ``rerank`` is set). Writes ids, distances and chunk rows, no texts: the reduce step reads the texts of the
    neighbours it keeps (``merge_shards``)."""
    import faiss

    from tttnn.retrieval.index import NpyRows, to_gpus
    from tttnn.retrieval.retrieve import search_shard_files

    index = to_gpus(faiss.read_index(index_path), gpus, nprobe)
    vectors = NpyRows(vectors_path) if vectors_path and rerank else None
    sets = []
    for queries_path, test_path in zip(queries_paths, test_paths, strict=True):
        test = pd.read_parquet(test_path, columns=["doc_id", "text"])
        sets.append((np.load(queries_path), test["doc_id"].tolist(), test["text"].tolist()))
    outs = search_shard_files(
        index,
        chunks_path,
        sets,
        retrieve["k"],
        shard,
        retrieve.get("max_distance"),
        retrieve.get("drop_exact", True),
        docs_path,
        nprobe,
        vectors,
        rerank,
    )
    for (_, qids, _), out, test_path, out_path in zip(sets, outs, test_paths, out_paths, strict=True):
        log.info("shard %s, %s: %d neighbours for %d queries", shard, test_path, len(out), len(qids))
        write_parquet(out, out_path)


def count_rows(paths: Sequence[str]) -> int:
    """Rows of parquet files, from their metadata (nothing is read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def check_k_fits(chunks: Sequence[str], k: int, out_path: str | None = None) -> None:
    """Fail, naming both numbers, when ``retrieve.k`` exceeds the chunks in the whole index (read from the
    parquet metadata only); with ``out_path``, record the check so that jobs can wait for it."""
    total = count_rows(chunks)
    if total < k:
        raise ValueError(
            f"retrieve.k = {k}, but the index holds only {total} chunks in {len(chunks)} shards: "
            f"lower retrieve.k to at most {total}"
        )
    if out_path:
        write_text(f"retrieve.k = {k} <= {total} chunks in {len(chunks)} shards\n", out_path)


def merge_shards(
    parts: Sequence[str],
    test_path: str,
    out_path: str,
    k: int,
    chunks: Sequence[str] = (),
    docs: Sequence[str] = (),
) -> None:
    """The reduce step: global top-k per query from every shard's list, then the kept neighbours' texts.

    Texts are read by row from the shards' ``chunks`` (named by shard: ``<shard>.parquet``), or with ``docs``
    (the shards' corpus files) the neighbours' whole documents, once per kept neighbour.
    ``k`` above the number of chunks in the whole index fails here, naming both numbers, instead of
    letting every document record checkpoints past the neighbours it could ever train on.
    """
    from tttnn.retrieval.retrieve import NEIGHBOR_COLUMNS, attach_texts, merge_neighbors, queries_without

    if chunks:
        check_k_fits(chunks, k)
    qids = pd.read_parquet(test_path, columns=["doc_id"])["doc_id"].tolist()
    merged = merge_neighbors([pd.read_parquet(p) for p in parts], qids, k)
    if "text" not in merged.columns:
        by_shard = {Path(p).stem: str(p) for p in chunks}
        merged = attach_texts(merged, by_shard, {Path(p).stem: str(p) for p in docs} if docs else None)
        merged = merged[NEIGHBOR_COLUMNS]
    lacking = queries_without(merged, qids)
    if lacking:
        log.warning(
            "%d queries have no neighbour after filtering (they are evaluated at n = 0 only): %s",
            len(lacking),
            lacking,
        )
    short = merged.groupby("query_id").size()
    log.info(
        "%d queries from %d shards; neighbours per query: min %d, max %d",
        len(qids),
        len(parts),
        short.min() if len(short) else 0,
        short.max() if len(short) else 0,
    )
    write_parquet(merged, out_path)
