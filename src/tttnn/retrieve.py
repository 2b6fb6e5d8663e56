"""Map-reduce neighbour search: each shard is searched for all queries of a task (map), then the
per-shard lists are merged into a global top-k by distance (reduce). No index servers needed."""

from __future__ import annotations

import time
from collections.abc import Sequence

import faiss
import numpy as np
import pandas as pd

from .index import search, search_reranked

NEIGHBOR_COLUMNS = ["query_id", "rank", "chunk_id", "doc_id", "distance", "shard", "text", "search_seconds"]


def search_shard(
    index: faiss.Index,
    chunks: pd.DataFrame,
    queries: np.ndarray,
    query_ids: Sequence[str],
    query_texts: Sequence[str],
    k: int,
    shard: str,
    max_distance: float | None = None,
    drop_exact: bool = True,
    doc_texts: dict[str, str] | None = None,
    nprobe: int = 16,
    vectors: np.ndarray | None = None,
    rerank: int | None = None,
) -> pd.DataFrame:
    """The filtered top-``k`` chunks of one shard for every query (the map step).

    Distances are plain L2, ``||v - q||``, the authors' unit (faiss's L2 indexes return its square: the root is
    taken here, so every threshold, weight and table downstream uses L2).
    Filters: L2 distance below ``max_distance`` (the authors: 4.0 for their RoBERTa), and with
    ``drop_exact`` no chunk whose text, or whose document's text, equals the query document's.
    ``doc_texts`` (doc_id -> text) makes a neighbour's training text its whole document.
    With ``rerank`` and the shard's ``vectors``, that many candidates are re-ranked exactly.
    """
    if len(chunks) != index.ntotal:
        raise ValueError(f"shard {shard}: index has {index.ntotal} vectors but {len(chunks)} chunks")
    t0 = time.perf_counter()
    texts = chunks["text"].tolist()
    cids = chunks["chunk_id"].tolist()
    dids = chunks["doc_id"].tolist()
    rows = []
    want = min(k, index.ntotal)
    pending = list(range(len(query_ids)))
    kk = min(index.ntotal, 2 * k + 8)
    kept: dict[int, list[tuple[float, int]]] = {}
    while pending:
        if rerank and vectors is not None:
            D, I = search_reranked(index, queries[pending], kk, vectors, max(rerank, kk), nprobe)
        else:
            D, I = search(index, queries[pending], kk, nprobe)
        D = np.sqrt(np.maximum(D, 0.0))  # squared L2 (faiss) -> L2 (the authors' np.linalg.norm)
        still = []
        for row, qi in enumerate(pending):
            qtext = query_texts[qi].strip()
            good = []
            for d, i in zip(D[row], I[row]):
                if i < 0 or (max_distance is not None and d >= max_distance):
                    continue
                if drop_exact and (texts[i].strip() == qtext or (doc_texts and doc_texts[dids[i]].strip() == qtext)):
                    continue
                good.append((float(d), int(i)))
            exhausted = kk >= index.ntotal or (max_distance is not None and len(D[row]) and D[row][-1] >= max_distance)
            if len(good) >= want or exhausted:
                kept[qi] = good[:want]
            else:
                still.append(qi)
        pending, kk = still, min(index.ntotal, kk * 4)
    seconds = (time.perf_counter() - t0) / max(len(query_ids), 1)
    for qi, qid in enumerate(query_ids):
        for rank, (d, i) in enumerate(kept[qi]):
            text = doc_texts[dids[i]] if doc_texts else texts[i]
            rows.append((qid, rank, cids[i], dids[i], d, shard, text, seconds))
    return pd.DataFrame(rows, columns=NEIGHBOR_COLUMNS)


def merge_neighbors(parts: Sequence[pd.DataFrame], query_ids: Sequence[str], k: int) -> pd.DataFrame:
    """Global top-``k`` per query from per-shard results (the reduce step), ranks renumbered from 0.

    ``search_seconds`` becomes the query's total over shards. Every query must have been searched in
    every shard's batch; queries with no neighbour left after filtering keep zero rows (and TTT records
    that), they are never dropped silently: the caller gets their ids via :func:`queries_without`.
    """
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=NEIGHBOR_COLUMNS)
    unknown = set(df["query_id"]) - set(query_ids)
    if unknown:
        raise ValueError(f"neighbour lists name queries not in the task: {sorted(unknown)[:3]}")
    secs = df.groupby("query_id")["search_seconds"].sum() if len(df) else pd.Series(dtype=float)
    df = df.sort_values(["query_id", "distance", "shard", "chunk_id"], kind="mergesort")
    df = df.groupby("query_id", sort=False).head(k).copy()
    df["rank"] = df.groupby("query_id", sort=False).cumcount()
    df["search_seconds"] = df["query_id"].map(secs)
    order = {q: i for i, q in enumerate(query_ids)}
    df = df.sort_values(["query_id", "rank"], key=lambda s: s.map(order) if s.name == "query_id" else s)
    return df[NEIGHBOR_COLUMNS].reset_index(drop=True)


def queries_without(neighbors: pd.DataFrame, query_ids: Sequence[str]) -> list[str]:
    """Query ids that have no neighbour at all."""
    have = set(neighbors["query_id"])
    return [q for q in query_ids if q not in have]
