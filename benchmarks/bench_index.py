"""Benchmark (not a test): Flat against IVF-PQ faiss indexes, printed as JSON lines.

    python benchmarks/bench_index.py [--sizes 100000 500000] [--dim 384] [--real results/embeddings/minipile/minilm-w128s128]
    python benchmarks/bench_index.py --sizes 1000000 --dim 1024 --factory IVF1024,PQ64 --probes 16:0 16:100 64:100 64:400 --real none

Per size: build seconds, index bytes in memory and on disk, query latency (ms per query, batched),
and recall@20 against exact search, for Flat, IVF-PQ, and IVF-PQ whose candidates are re-ranked by
exact distance from the float vectors on disk (memory-mapped; not counted in memory). What we look
for: an index at most 1/16 of Flat's memory with recall@20 >= 0.9.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time

import faiss
import numpy as np

from tttnn.retrieval.index import build_index, recall_at_k, search, search_reranked


def embedding_like(n: int, dim: int, seed: int = 0, latent: int = 24) -> np.ndarray:
    """Unit vectors with low intrinsic dimension, like sentence embeddings: a fixed random linear map
    of ``latent``-dimensional clustered points, plus a little isotropic noise."""
    proj = np.random.default_rng(12345).normal(size=(latent, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(54321).normal(size=(200, latent)).astype(np.float32)
    z = centers[rng.integers(0, 200, n)] + 0.5 * rng.normal(size=(n, latent)).astype(np.float32)
    if n * dim <= 500_000 * 384:  # the sizes of the README's first table: generated as they were
        x = z @ proj + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    x = np.empty((n, dim), dtype=np.float32)  # larger: in blocks, float32 noise (a few GB less at 1M x 1024)
    for a in range(0, n, 65_536):
        b = min(n, a + 65_536)
        x[a:b] = z[a:b] @ proj + 0.3 * rng.standard_normal((b - a, dim), dtype=np.float32)
        x[a:b] /= np.linalg.norm(x[a:b], axis=1, keepdims=True)
    return x


BUILT: dict[tuple[int, str], tuple[faiss.Index, float]] = {}  # (id of the data, factory) -> (index, build s)


def measure(
    x: np.ndarray,
    q: np.ndarray,
    factory: str,
    nprobe: int,
    exact: np.ndarray | None,
    k: int = 20,
    rerank: int | None = None,
    on_disk: np.ndarray | None = None,
    train_size: int = 50_000,
) -> dict:
    key = (id(x), factory)
    if key not in BUILT:  # each factory built once per data set, then searched with every nprobe / re-rank
        BUILT.clear() if BUILT and next(iter(BUILT))[0] != id(x) else None
        t = time.perf_counter()
        BUILT[key] = (build_index(x, factory, train_size=min(len(x), train_size)), time.perf_counter() - t)
    index, build = BUILT[key]
    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(index, f.name)
        disk = os.path.getsize(f.name)
    mem = faiss.serialize_index(index).nbytes
    t = time.perf_counter()
    if rerank:
        _, ids = search_reranked(index, q, k, on_disk, rerank, nprobe)
    else:
        _, ids = search(index, q, k, nprobe)
    latency = (time.perf_counter() - t) / len(q) * 1000
    return {
        "factory": factory,
        "nprobe": nprobe if "IVF" in factory else None,
        "rerank_from_disk": rerank,
        "build_s": round(build, 2),
        "mem_bytes": int(mem),
        "disk_bytes": disk,
        "query_ms": round(latency, 3),
        "recall_at_20": None if exact is None else round(recall_at_k(ids, exact), 4),
    }, ids


def run(
    x: np.ndarray, q: np.ndarray, label: str, configs: list[tuple[str, int, int | None]], train_size: int = 50_000
) -> None:
    flat, exact = measure(x, q, "Flat", 1, None)
    flat["recall_at_20"] = 1.0
    rows = [flat]
    with tempfile.TemporaryDirectory() as tmp:  # the float vectors re-ranking reads, on disk
        np.save(os.path.join(tmp, "v.npy"), x)
        on_disk = np.load(os.path.join(tmp, "v.npy"), mmap_mode="r")
        for factory, nprobe, rerank in configs:
            rows.append(measure(x, q, factory, nprobe, exact, rerank=rerank, on_disk=on_disk, train_size=train_size)[0])
    for r in rows:
        r.update(
            {"data": label, "n": len(x), "dim": x.shape[1], "mem_vs_flat": round(r["mem_bytes"] / flat["mem_bytes"], 4)}
        )
        print(json.dumps(r), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 500_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--real", default="results/embeddings/minipile/minilm-w128s128", help="folder of shard .npy files")
    ap.add_argument(
        "--factory", default=None, help="one IVF-PQ factory for every size (default: IVF(4 sqrt n),PQ(dim/8))"
    )
    ap.add_argument(
        "--probes",
        nargs="+",
        default=["16:0", "16:100", "32:200"],
        help="nprobe:re-ranked candidates (0: none) searched on each built index",
    )
    ap.add_argument("--train-size", type=int, default=50_000, help="vectors sampled to train IVF/PQ")
    args = ap.parse_args()
    probes = [(int(p.split(":")[0]), int(p.split(":")[1]) or None) for p in args.probes]
    for n in args.sizes:
        nlist = int(4 * np.sqrt(n)) // 64 * 64 or 64
        x = embedding_like(n, args.dim)
        q = embedding_like(args.queries, args.dim, seed=1)
        m = args.dim // 8  # 48 bytes per vector for 384 dims: 1/32 of Flat's 1536 (+8 bytes of id)
        factory = args.factory or f"IVF{nlist},PQ{m}"
        run(x, q, "embedding-like-random", [(factory, nprobe, rr) for nprobe, rr in probes], args.train_size)
    shards = sorted(glob.glob(os.path.join(args.real, "[0-9]*.npy")))
    if shards:
        x = np.concatenate([np.load(s) for s in shards])
        q_files = sorted(glob.glob(os.path.join(args.real, "queries", "test", "*.npy")))
        q = np.concatenate([np.load(f) for f in q_files]) if q_files else x[:200]
        run(x, q, "minipile-minilm", [("IVF64,PQ48", 16, None), ("IVF64,PQ48", 16, 100), ("IVF64,PQ96", 16, None)])


if __name__ == "__main__":
    main()
