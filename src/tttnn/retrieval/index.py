"""faiss indexes per shard: build from a factory string, search (optionally re-ranked exactly), recall."""

from __future__ import annotations

import logging
import os

import faiss
import numpy as np

from tttnn.jobs import READ_BLOCK_ROWS

log = logging.getLogger(__name__)


class NpyRows:
    """Rows of a ``.npy`` file read on demand: each access maps the file, copies the rows and unmaps it, so a
    job that reads a large array block by block keeps one block in memory (pages of a long-lived memory map
    would count in its RSS until the whole file had been read)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        mm = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = mm.shape, mm.dtype
        del mm

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        mm = np.load(self.path, mmap_mode="r")
        try:
            return np.array(mm[key])
        finally:
            del mm


def _centroids(index: faiss.Index) -> int:
    """The most centroids any trained part of ``index`` has (IVF lists, PQ sub-quantizer codes), 0 for none."""
    n = 0
    try:
        n = faiss.extract_index_ivf(index).nlist
    except RuntimeError:
        pass
    sub = faiss.downcast_index(faiss.extract_index_ivf(index) if n else index)
    pq = getattr(sub, "pq", None)
    return max(n, int(pq.ksub) if pq is not None else 0)


def build_index(
    vectors: np.ndarray | NpyRows,
    factory: str = "Flat",
    train_size: int | None = 100_000,
    seed: int = 0,
    block_rows: int = READ_BLOCK_ROWS,
) -> faiss.Index:
    """An L2 index made by ``faiss.index_factory``; trained (IVF, PQ) on a seeded sample of the vectors.

    ``vectors`` may be on disk (:class:`NpyRows`, a memory map): the sample and then blocks of ``block_rows``
    are read in turn, so memory is the index, the sample and one block. faiss's rule of thumb wants at least
    39 training vectors per centroid: fewer is logged as a warning.
    """
    x = vectors
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
        centroids = _centroids(index)
        if n < 39 * centroids:
            log.warning(
                "training %s on %d vectors: fewer than faiss's 39 per centroid (%d centroids; want %d%s)",
                factory,
                n,
                centroids,
                39 * centroids,
                ", raise index.train_size" if n < len(x) else ", more data or fewer centroids",
            )
        pick = np.random.default_rng(seed).choice(len(x), n, replace=False) if n < len(x) else slice(None)
        sample = np.ascontiguousarray(x[pick], dtype=np.float32)
        log.info("training %s on %d vectors", factory, len(sample))
        index.train(sample)
        del sample
    for start in range(0, len(x), block_rows):
        index.add(np.ascontiguousarray(x[start : start + block_rows], dtype=np.float32))
    return index


# faiss's GPU indexes return at most this many neighbours per query
GPU_MAX_K = 2048


def on_gpu(index: faiss.Index) -> bool:
    """Whether ``index`` lives on GPUs: a faiss GPU index, or the shards/replicas :func:`to_gpus` makes."""
    return "Gpu" in type(index).__name__ or type(index).__name__ in ("IndexShards", "IndexReplicas")


def to_gpus(index: faiss.Index, gpus: int, nprobe: int = 16) -> faiss.Index:
    """``index`` copied to ``gpus`` GPUs, sharded across them, float32 (exact, as on the CPU); unchanged when
    ``gpus`` is 0. Needs faiss's GPU build (PyPI: ``faiss-gpu-cu12`` in place of ``faiss-cpu``)."""
    if gpus <= 0:
        return index
    have = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if have == 0:
        raise RuntimeError(
            f"index.search_gpus is {gpus} but this faiss sees no GPU (faiss {faiss.__version__}; a CPU build, or "
            "no GPU in the job): install faiss-gpu-cu12 instead of faiss-cpu, or set index.search_gpus: 0"
        )
    set_nprobe(index, nprobe)  # copied with the index: GPU IVF indexes take it from the CPU one
    options = faiss.GpuMultipleClonerOptions()
    options.shard, options.useFloat16 = True, False
    return faiss.index_cpu_to_all_gpus(index, co=options, ngpu=min(gpus, have))


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
