"""Benchmark (not a test): Flat against IVF-PQ faiss indexes, printed as JSON lines.

    python benchmarks/bench_index.py [--sizes 100000 1000000] [--dim 384] [--real results/embeddings/...]

Per size: build seconds, index bytes in memory and on disk, query latency (ms per query, batched),
and recall@20 against exact search. What we look for: an index at most 1/16 of Flat's size with
recall@20 >= 0.9.
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

from tttnn.index import build_index, recall_at_k, search


def clustered(n: int, dim: int, seed: int = 0, n_centers: int = 1000) -> np.ndarray:
    """Vectors around random centres, unit-normalised like sentence embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_centers, dim)).astype(np.float32)
    x = centers[rng.integers(0, n_centers, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(x: np.ndarray, q: np.ndarray, factory: str, nprobe: int, exact: np.ndarray | None, k: int = 20) -> dict:
    t = time.perf_counter()
    index = build_index(x, factory, train_size=min(len(x), 100_000))
    build = time.perf_counter() - t
    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(index, f.name)
        disk = os.path.getsize(f.name)
    mem = faiss.serialize_index(index).nbytes
    t = time.perf_counter()
    _, ids = search(index, q, k, nprobe)
    latency = (time.perf_counter() - t) / len(q) * 1000
    return {"factory": factory, "nprobe": nprobe if "IVF" in factory else None, "build_s": round(build, 2),
            "mem_bytes": int(mem), "disk_bytes": disk, "query_ms": round(latency, 3),
            "recall_at_20": None if exact is None else round(recall_at_k(ids, exact), 4)}, ids  # fmt: skip


def run(x: np.ndarray, q: np.ndarray, label: str, configs: list[tuple[str, int]]) -> None:
    flat, exact = measure(x, q, "Flat", 1, None)
    flat["recall_at_20"] = 1.0
    rows = [flat]
    for factory, nprobe in configs:
        rows.append(measure(x, q, factory, nprobe, exact)[0])
    for r in rows:
        r.update({"data": label, "n": len(x), "dim": x.shape[1], "mem_vs_flat": round(r["mem_bytes"] / flat["mem_bytes"], 4)})
        print(json.dumps(r), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--real", default="results/embeddings/minipile/minilm", help="folder of shard .npy files")
    args = ap.parse_args()
    for n in args.sizes:
        nlist = int(4 * np.sqrt(n)) // 64 * 64 or 64
        x = clustered(n, args.dim)
        q = clustered(args.queries, args.dim, seed=1)
        run(x, q, "clustered-random", [(f"IVF{nlist},PQ{args.dim // 16}", 16), (f"IVF{nlist},PQ{args.dim // 16}", 64),
                                       (f"IVF{nlist},PQ{args.dim // 8}", 64)])  # fmt: skip
    shards = sorted(glob.glob(os.path.join(args.real, "[0-9]*.npy")))
    if shards:
        x = np.concatenate([np.load(s) for s in shards])
        q_files = sorted(glob.glob(os.path.join(args.real, "queries", "*.npy")))
        q = np.concatenate([np.load(f) for f in q_files]) if q_files else x[:200]
        run(x, q, "minipile-minilm", [("IVF64,PQ24", 16), ("IVF64,PQ48", 16), ("IVF64,PQ96", 32)])


if __name__ == "__main__":
    main()
