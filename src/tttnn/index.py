"""faiss indexes per shard: build from a factory string, search (optionally re-ranked exactly), recall."""

from __future__ import annotations

import logging

import faiss
import numpy as np

log = logging.getLogger(__name__)


def build_index(
    vectors: np.ndarray, factory: str = "Flat", train_size: int | None = 100_000, seed: int = 0
) -> faiss.Index:
    """An L2 index made by ``faiss.index_factory``; trained (IVF, PQ) on a seeded sample of the vectors."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"cannot index an array of shape {x.shape}")
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_L2)
    if not index.is_trained:
        n = len(x) if train_size is None else min(len(x), train_size)
        try:
            nlist = faiss.extract_index_ivf(index).nlist
        except RuntimeError:
            nlist = 0
        if nlist > n:
            raise ValueError(
                f"index.factory {factory!r}: {nlist} inverted lists need at least as many training vectors, "
                f"but this shard has {n}; use fewer lists (e.g. IVF{max(1, n // 39)}) or more data"
            )
        sample = x[np.random.default_rng(seed).choice(len(x), n, replace=False)] if n < len(x) else x
        log.info("training %s on %d vectors", factory, len(sample))
        index.train(sample)
    index.add(x)
    return index


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """Set ``nprobe`` on IVF indexes (no-op for flat ones)."""
    try:
        faiss.extract_index_ivf(index).nprobe = nprobe
    except RuntimeError:
        pass


def search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Squared-L2 distances and row ids of the ``k`` nearest rows (-1 where fewer exist)."""
    set_nprobe(index, nprobe)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return index.search(q, min(k, index.ntotal))


def search_reranked(
    index: faiss.Index, queries: np.ndarray, k: int, vectors: np.ndarray, n_candidates: int, nprobe: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates from a compressed index, re-ranked by exact squared L2 against ``vectors``.

    ``vectors`` may be a memory-mapped ``.npy`` on disk: only the candidates' rows are read, so the
    index in RAM stays compressed while the final ranking is exact over the candidates.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    _, cand = search(index, q, max(k, n_candidates), nprobe)
    k = min(k, index.ntotal)
    D = np.full((len(q), k), np.inf, dtype=np.float32)
    I = np.full((len(q), k), -1, dtype=np.int64)
    for row, ids in enumerate(cand):
        ids = np.sort(ids[ids >= 0])  # sorted rows: sequential reads from disk
        if not len(ids):
            continue
        exact = ((np.asarray(vectors[ids], dtype=np.float32) - q[row]) ** 2).sum(1)
        order = np.lexsort((ids, exact))[:k]
        D[row, : len(order)], I[row, : len(order)] = exact[order], ids[order]
    return D, I


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k found by the approximate search."""
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) / max((e >= 0).sum(), 1) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits))
