"""Retrieval: planted neighbours, sharded map-reduce equals one index, IVF-PQ recall, filters, chunking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tttnn.data.chunk import chunk_documents, split_query
from tttnn.retrieval.index import build_index, recall_at_k, search
from tttnn.retrieval.retrieve import merge_neighbors, queries_without, search_shard


def _chunks(n, shard, rng, dim=16):
    vec = rng.normal(size=(n, dim)).astype(np.float32)
    df = pd.DataFrame(
        {
            "chunk_id": [f"s{shard}-c{i}" for i in range(n)],
            "doc_id": [f"s{shard}-d{i}" for i in range(n)],
            "task": "t",
            "text": [f"text {shard} {i}" for i in range(n)],
            "n_tokens": 3,
        }
    )
    return df, vec


def test_planted_neighbor_found_after_merge_and_sharding_is_exact():
    rng = np.random.default_rng(0)
    shards = [_chunks(300, s, rng) for s in range(3)]
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    # plant a near-duplicate of query 2 in shard 1, row 17
    shards[1][1][17] = queries[2] + 1e-3
    qids, qtexts = [f"q{i}" for i in range(5)], [f"query {i}" for i in range(5)]
    parts = [
        search_shard(build_index(v), c, queries, qids, qtexts, k=10, shard=f"{s:03d}")
        for s, (c, v) in enumerate(shards)
    ]
    merged = merge_neighbors(parts, qids, k=10)
    top = merged[(merged.query_id == "q2") & (merged["rank"] == 0)].iloc[0]
    assert top.chunk_id == "s1-c17" and top.distance < 1e-2  # L2 of a 1e-3 offset in 16 dims: 4e-3
    # sharded map-reduce equals one flat index over everything
    all_vec = np.concatenate([v for _, v in shards])
    all_ids = np.concatenate([c.chunk_id.to_numpy() for c, _ in shards])
    D, I = search(build_index(all_vec), queries, 10)
    for qi, q in enumerate(qids):
        got = merged[merged.query_id == q].sort_values("rank")
        assert got.chunk_id.tolist() == all_ids[I[qi]].tolist()
        np.testing.assert_allclose(got.distance.to_numpy(), np.sqrt(D[qi]), rtol=1e-5)  # faiss: squared L2
        true_l2 = np.linalg.norm(all_vec[I[qi]] - queries[qi], axis=1)  # the authors' np.linalg.norm
        np.testing.assert_allclose(got.distance.to_numpy(), true_l2, rtol=1e-4)
    assert list(merged.query_id.unique()) == qids


def test_ivfpq_recall_against_flat():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(50, 32)).astype(np.float32) * 4
    x = (centers[rng.integers(0, 50, 6000)] + rng.normal(size=(6000, 32))).astype(np.float32)
    q = (centers[rng.integers(0, 50, 200)] + rng.normal(size=(200, 32))).astype(np.float32)
    _, exact = search(build_index(x, "Flat"), q, 20)
    _, ivf_flat = search(build_index(x, "IVF32,Flat"), q, 20, nprobe=32)
    assert recall_at_k(ivf_flat, exact) == pytest.approx(1.0)  # probing every list is exact
    _, approx = search(build_index(x, "IVF32,PQ8"), q, 20, nprobe=8)
    r = recall_at_k(approx, exact)
    assert 0.05 < r < 1.0  # 8-byte codes lose information but find much of the true top-20
    _, approx16 = search(build_index(x, "IVF32,PQ16"), q, 20, nprobe=8)
    assert recall_at_k(approx16, exact) > r  # more bytes per vector, better recall


def test_filters_drop_exact_copies_and_far_neighbors():
    rng = np.random.default_rng(3)
    chunks, vec = _chunks(50, 0, rng)
    q = vec[[4]].copy()
    chunks.loc[4, "text"] = "the query document"
    out = search_shard(build_index(vec), chunks, q, ["q"], ["the query document"], k=5, shard="000")
    assert "s0-c4" not in out.chunk_id.tolist() and len(out) == 5
    kept = search_shard(build_index(vec), chunks, q, ["q"], ["the query document"], k=5, shard="000", drop_exact=False)
    assert kept.chunk_id.iloc[0] == "s0-c4"
    far = search_shard(build_index(vec), chunks, q, ["q"], ["x"], k=5, shard="000", max_distance=1e-6)
    assert far.chunk_id.tolist() == ["s0-c4"]
    none = search_shard(build_index(vec), chunks, q + 100, ["q"], ["x"], k=5, shard="000", max_distance=1.0)
    merged = merge_neighbors([none], ["q"], 5)
    assert queries_without(merged, ["q"]) == ["q"]


def _planted_at(l2s, dim=8):
    """Chunks whose vectors lie at the given plain L2 distances from a query at the origin."""
    vec = np.zeros((len(l2s), dim), dtype=np.float32)
    vec[:, 0] = l2s
    chunks = pd.DataFrame(
        {
            "chunk_id": [f"c{i}" for i in range(len(l2s))],
            "doc_id": [f"d{i}" for i in range(len(l2s))],
            "task": "t",
            "text": [f"t{i}" for i in range(len(l2s))],
            "n_tokens": 1,
        }
    )
    return chunks, vec, np.zeros((1, dim), dtype=np.float32)


def test_distance_threshold_is_plain_l2():
    # the authors keep neighbours with np.linalg.norm(v - q) < threshold: at 2.0, L2 1.9 stays and 2.1 goes
    # (compared with faiss's squared distances, 3.61 and 4.41, a 2.0 threshold would keep neither)
    chunks, vec, q = _planted_at([1.9, 2.1])
    out = search_shard(build_index(vec), chunks, q, ["q"], ["x"], k=2, shard="000", max_distance=2.0)
    assert out.chunk_id.tolist() == ["c0"] and out.distance.iloc[0] == pytest.approx(1.9, rel=1e-6)


def test_interpolation_weights_are_softmax_of_minus_l2():
    import torch

    from tttnn.methods.interpolation import knn_distribution

    chunks, vec, q = _planted_at([0.5, 1.0, 1.7])
    out = search_shard(build_index(vec), chunks, q, ["q"], ["x"], k=3, shard="000")
    # each neighbour a single distinct token, so p_kNN over those tokens is exactly the weights
    p = knn_distribution([[0], [1], [2]], out.distance.tolist(), vocab_size=3)
    l2 = np.linalg.norm(vec - q, axis=1)
    expect = np.exp(-l2) / np.exp(-l2).sum()
    np.testing.assert_allclose(p.numpy(), expect, rtol=1e-6)
    assert not np.allclose(p.numpy(), np.exp(-(l2**2)) / np.exp(-(l2**2)).sum(), rtol=1e-3)
    assert isinstance(p, torch.Tensor)


def test_window_chunks_are_exact_substrings(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "def add(a, b):\n    return a + b\n" * 20
    docs = pd.DataFrame({"doc_id": ["d"], "task": ["github"], "text": [text]})
    ch = chunk_documents(docs, "window", tok, size=16, stride=8)
    assert len(ch) > 5 and all(t in text for t in ch.text)
    assert ch.n_tokens.max() == 16
    assert ch.text.iloc[0] == text[: len(ch.text.iloc[0])]
    assert text.rstrip().endswith(ch.text.iloc[-1].rstrip())
    whole = chunk_documents(docs, "document")
    assert whole.text.tolist() == [text] and whole.chunk_id.tolist() == ["d#0"]


def test_split_query():
    text = " ".join(f"w{i}" for i in range(10))
    q, e = split_query(text, "split", max_tokens=3)
    assert q.split() == ["w0", "w1", "w2"] and e.split()[0] == "w3" and q + e == text
    q, e = split_query(text, "split", max_tokens=100)
    assert len(q.split()) == 5
    assert split_query(text, "full") == (text, text)


def test_reranking_compressed_candidates_from_disk_restores_exact_order(tmp_path):
    from tttnn.retrieval.index import search_reranked

    rng = np.random.default_rng(4)
    centers = rng.normal(size=(40, 32)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 40, 5000)] + rng.normal(size=(5000, 32))).astype(np.float32)
    q = (centers[rng.integers(0, 40, 100)] + rng.normal(size=(100, 32))).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    on_disk = np.load(tmp_path / "v.npy", mmap_mode="r")
    De, exact = search(build_index(x, "Flat"), q, 20)
    pq = build_index(x, "IVF32,PQ4")
    _, plain = search(pq, q, 20, nprobe=8)
    Dr, reranked = search_reranked(pq, q, 20, on_disk, n_candidates=200, nprobe=8)
    assert recall_at_k(reranked, exact) > recall_at_k(plain, exact) + 0.2
    # with every list probed and every vector a candidate, the result is the exact search
    D_all, I_all = search_reranked(pq, q, 20, on_disk, n_candidates=5000, nprobe=32)
    np.testing.assert_array_equal(I_all, exact)
    np.testing.assert_allclose(D_all, De, rtol=1e-4)


def test_one_batched_search_call_per_shard_for_every_query_set(tmp_path, monkeypatch):
    import tttnn.retrieval.retrieve as retrieve
    from tttnn.retrieval.retrieve import search_shard_files

    rng = np.random.default_rng(3)
    chunks, vec = _chunks(400, 0, rng)
    chunks_path = tmp_path / "chunks.parquet"
    chunks.to_parquet(chunks_path)
    index = build_index(vec)
    sets = []
    for s, n in enumerate((3, 5, 2)):
        q = rng.normal(size=(n, 16)).astype(np.float32)
        sets.append((q, [f"set{s}-q{i}" for i in range(n)], [f"query {s} {i}" for i in range(n)]))
    alone = [search_shard_files(index, str(chunks_path), [one], 7, "000")[0] for one in sets]
    calls = []
    real = retrieve.search
    monkeypatch.setattr(retrieve, "search", lambda *a, **kw: calls.append(len(a[1])) or real(*a, **kw))
    together = search_shard_files(index, str(chunks_path), sets, 7, "000")
    assert calls == [10]  # every query of the three sets in one call
    cols = ["query_id", "rank", "chunk_id", "distance"]
    for a, b in zip(alone, together, strict=True):
        pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


def test_gpu_search_without_a_gpu_build_says_what_to_install():
    import faiss

    from tttnn.retrieval.index import on_gpu, to_gpus

    index = build_index(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32))
    assert to_gpus(index, 0) is index and not on_gpu(index)
    if faiss.get_num_gpus() == 0:
        with pytest.raises(RuntimeError, match=r"index.search_gpus is 1.*faiss-gpu-cu12"):
            to_gpus(index, 1)
    shards = faiss.IndexShards(8)  # what to_gpus returns for several GPUs: searched at most GPU_MAX_K deep
    assert on_gpu(shards)
