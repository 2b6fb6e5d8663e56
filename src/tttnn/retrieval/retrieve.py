"""Map-reduce neighbour search: each shard is searched for all queries of a task (map), then the
per-shard lists are merged into a global top-k by distance (reduce). No index servers needed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import faiss
import numpy as np
import pandas as pd

from tttnn.retrieval.index import GPU_MAX_K, on_gpu, search, search_reranked

NEIGHBOR_COLUMNS = ["query_id", "rank", "chunk_id", "doc_id", "distance", "shard", "text", "search_seconds"]
# what the map step writes from files: ids, distances and each chunk's row in its shard's table; texts are
# attached once, after the merge, to the k neighbours kept (:func:`attach_texts`)
MAP_COLUMNS = ["query_id", "rank", "chunk_id", "doc_id", "distance", "shard", "row", "search_seconds"]


def _search_kept(
    index: faiss.Index,
    queries: np.ndarray,
    n_queries: int,
    k: int,
    excluded: Callable[[int, int], bool],
    max_distance: float | None,
    nprobe: int,
    vectors: np.ndarray | None,
    rerank: int | None,
) -> dict[int, list[tuple[float, int]]]:
    """Per query, the ``k`` nearest rows (L2 distance, row) that pass the filters, asking faiss for more
    candidates (x4) only for the queries whose first candidates were filtered away."""
    want = min(k, index.ntotal)
    pending = list(range(n_queries))
    limit = min(index.ntotal, GPU_MAX_K if on_gpu(index) else index.ntotal)
    kk = min(limit, 2 * k + 8)
    kept: dict[int, list[tuple[float, int]]] = {}
    while pending:
        if rerank and vectors is not None:
            D, I = search_reranked(index, queries[pending], kk, vectors, max(rerank, kk), nprobe)
        else:
            D, I = search(index, queries[pending], kk, nprobe)
        D = np.sqrt(np.maximum(D, 0.0))  # squared L2 (faiss) -> L2 (the authors' np.linalg.norm)
        still = []
        for row, qi in enumerate(pending):
            good = []
            for d, i in zip(D[row], I[row]):
                if i < 0 or (max_distance is not None and d >= max_distance) or excluded(qi, int(i)):
                    continue
                good.append((float(d), int(i)))
            exhausted = kk >= limit or (max_distance is not None and len(D[row]) and D[row][-1] >= max_distance)
            if len(good) >= want or exhausted:
                kept[qi] = good[:want]
            else:
                still.append(qi)
        pending, kk = still, min(limit, kk * 4)
    return kept


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
    """The filtered top-``k`` chunks of one shard for every query (the map step), texts attached.

    Distances are plain L2, ``||v - q||``, the authors' unit (faiss's L2 indexes return its square: the root is
    taken here, so every threshold, weight and table downstream uses L2).
    Filters: L2 distance below ``max_distance`` (the authors: 4.0 for their RoBERTa), and with
    ``drop_exact`` no chunk whose text, or whose document's text, equals the query document's.
    ``doc_texts`` (doc_id -> text) makes a neighbour's training text its whole document.
    With ``rerank`` and the shard's ``vectors``, that many candidates are re-ranked exactly.
    In memory; the workflow's map step reads files by row instead (:func:`search_shard_files`).
    """
    if len(chunks) != index.ntotal:
        raise ValueError(f"shard {shard}: index has {index.ntotal} vectors but {len(chunks)} chunks")
    t0 = time.perf_counter()
    texts = chunks["text"].tolist()
    cids = chunks["chunk_id"].tolist()
    dids = chunks["doc_id"].tolist()
    qtexts = [t.strip() for t in query_texts]

    def excluded(qi: int, i: int) -> bool:
        if not drop_exact:
            return False
        return texts[i].strip() == qtexts[qi] or bool(doc_texts and doc_texts[dids[i]].strip() == qtexts[qi])

    kept = _search_kept(index, queries, len(query_ids), k, excluded, max_distance, nprobe, vectors, rerank)
    seconds = (time.perf_counter() - t0) / max(len(query_ids), 1)
    rows = []
    for qi, qid in enumerate(query_ids):
        for rank, (d, i) in enumerate(kept[qi]):
            text = doc_texts[dids[i]] if doc_texts else texts[i]
            rows.append((qid, rank, cids[i], dids[i], d, shard, text, seconds))
    return pd.DataFrame(rows, columns=NEIGHBOR_COLUMNS)


def _iter_columns(path: str, columns: Sequence[str], batch_rows: int = 1024) -> Iterator[tuple[list, ...]]:
    """Columns of a parquet file as Python lists, ``batch_rows`` rows at a time (bounded memory)."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(columns)):
        yield tuple(batch.column(c).to_pylist() for c in columns)


def exact_copies(chunks_path: str, query_texts: Sequence[str], docs_path: str | None = None) -> dict[str, set[int]]:
    """Stripped query text -> rows of the chunk table whose text, or (with ``docs_path``) whose document's text,
    equals it: the ``drop_exact`` filter, found by streaming the tables once instead of holding their texts."""
    wanted = {t.strip() for t in query_texts}
    same_doc: dict[str, str] = {}
    if docs_path:
        for ids, texts in _iter_columns(docs_path, ["doc_id", "text"]):
            for d, t in zip(ids, texts):
                if (s := t.strip()) in wanted:
                    same_doc[d] = s
    out: dict[str, set[int]] = {}
    row = 0
    for dids, texts in _iter_columns(chunks_path, ["doc_id", "text"]):
        for d, t in zip(dids, texts):
            if (s := t.strip()) in wanted:
                out.setdefault(s, set()).add(row)
            if d in same_doc:
                out.setdefault(same_doc[d], set()).add(row)
            row += 1
    return out


def take_rows(path: str, rows: Iterable[int], columns: Sequence[str]) -> dict[int, tuple]:
    """Values of ``columns`` at the given row positions of a parquet file, reading only the row groups that
    hold them (one at a time), never the whole table."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    want = np.unique(np.fromiter(rows, dtype=np.int64))
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if len(want) and (want[0] < 0 or want[-1] >= bounds[-1]):
        raise IndexError(f"{path}: rows outside 0..{bounds[-1] - 1}")
    out: dict[int, tuple] = {}
    groups = np.searchsorted(bounds, want, side="right") - 1
    for g in np.unique(groups):
        rows_g = want[groups == g]
        table = pf.read_row_group(int(g), columns=list(columns)).take(rows_g - bounds[g])
        values = [table.column(c).to_pylist() for c in columns]
        for j, r in enumerate(rows_g.tolist()):
            out[r] = tuple(v[j] for v in values)
    return out


def search_shard_files(
    index: faiss.Index,
    chunks_path: str,
    query_sets: Sequence[tuple[np.ndarray, Sequence[str], Sequence[str]]],
    k: int,
    shard: str,
    max_distance: float | None = None,
    drop_exact: bool = True,
    docs_path: str | None = None,
    nprobe: int = 16,
    vectors: np.ndarray | None = None,
    rerank: int | None = None,
) -> list[pd.DataFrame]:
    """:func:`search_shard` for several query sets ``(vectors, ids, texts)`` over a shard's files (the map step).

    Returns per set the rows of :data:`MAP_COLUMNS`: ids, plain L2 distances and chunk rows, no texts. The chunk
    table (and with ``docs_path`` the shard's documents, for the whole-document copy filter) is streamed once
    for ``drop_exact``; the kept neighbours' ids are then read by row. Memory: the index, the queries, one
    batch of text.
    """
    import pyarrow.parquet as pq

    n_rows = pq.ParquetFile(chunks_path).metadata.num_rows
    if n_rows != index.ntotal:
        raise ValueError(f"shard {shard}: index has {index.ntotal} vectors but {n_rows} chunks")
    t0 = time.perf_counter()
    all_texts = [t for _, _, texts in query_sets for t in texts]
    copies = exact_copies(chunks_path, all_texts, docs_path) if drop_exact else {}
    setup = time.perf_counter() - t0
    # every query set in one batched search call (one scan of a Flat shard for all of them)
    n_all = len(all_texts)
    none: set[int] = set()
    drop = [copies.get(t.strip(), none) for t in all_texts]
    t1 = time.perf_counter()
    queries = np.concatenate([np.asarray(q, dtype=np.float32) for q, _, _ in query_sets]) if query_sets else None
    kept_all = _search_kept(
        index, queries, n_all, k, lambda qi, i: i in drop[qi], max_distance, nprobe, vectors, rerank
    )
    seconds = (time.perf_counter() - t1 + setup) / max(n_all, 1)
    results, first = [], 0
    for _, query_ids, _ in query_sets:
        kept = {qi: kept_all[first + qi] for qi in range(len(query_ids))}
        results.append((query_ids, kept, seconds))
        first += len(query_ids)
    ids = take_rows(
        chunks_path, (i for _, kept, _ in results for v in kept.values() for _, i in v), ["chunk_id", "doc_id"]
    )
    out = []
    for query_ids, kept, seconds in results:
        rows = [
            (qid, rank, *ids[i], d, shard, i, seconds)
            for qi, qid in enumerate(query_ids)
            for rank, (d, i) in enumerate(kept[qi])
        ]
        out.append(pd.DataFrame(rows, columns=MAP_COLUMNS))
    return out


def attach_texts(
    neighbors: pd.DataFrame, chunk_paths: Mapping[str, str], doc_paths: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The neighbours' training texts, read by row from their shards' chunk tables (or, with ``doc_paths``,
    their whole documents, selected by id): the reduce step attaches texts once, to the merged top-k only."""
    import pyarrow.dataset as ds

    texts: list[str | None] = [None] * len(neighbors)
    pos = np.arange(len(neighbors))
    for shard, idx in neighbors.groupby("shard", sort=True).indices.items():
        if doc_paths:
            wanted = set(neighbors["doc_id"].to_numpy()[idx])
            table = ds.dataset(doc_paths[shard]).to_table(
                columns=["doc_id", "text"], filter=ds.field("doc_id").isin(sorted(wanted))
            )
            by_id = dict(zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist()))
            got = [by_id.get(d) for d in neighbors["doc_id"].to_numpy()[idx]]
        else:
            rows = take_rows(chunk_paths[shard], neighbors["row"].to_numpy()[idx].tolist(), ["text"])
            got = [rows[int(r)][0] for r in neighbors["row"].to_numpy()[idx]]
        for j, t in zip(pos[idx], got):
            if t is None:
                raise ValueError(f"shard {shard}: neighbour {neighbors['chunk_id'].iloc[j]} has no text")
            texts[j] = t
    return neighbors.assign(text=pd.Series(texts, index=neighbors.index, dtype=object))


def merge_neighbors(parts: Sequence[pd.DataFrame], query_ids: Sequence[str], k: int) -> pd.DataFrame:
    """Global top-``k`` per query from per-shard results (the reduce step), ranks renumbered from 0.

    ``search_seconds`` becomes the query's total over shards. Every query must have been searched in
    every shard's batch; queries with no neighbour left after filtering keep zero rows (and TTT records
    that), they are never dropped silently: the caller gets their ids via :func:`queries_without`.
    """
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=NEIGHBOR_COLUMNS)
    columns = [c for c in NEIGHBOR_COLUMNS + ["row"] if c in df.columns]  # map outputs of files: no text, a row
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
    return df[columns].reset_index(drop=True)


def queries_without(neighbors: pd.DataFrame, query_ids: Sequence[str]) -> list[str]:
    """Query ids that have no neighbour at all."""
    have = set(neighbors["query_id"])
    return [q for q in query_ids if q not in have]
