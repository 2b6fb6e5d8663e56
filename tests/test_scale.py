"""Paper scale in bounded memory: streamed corpus shards, resumable block-wise embedding, indexes and neighbour
texts read from disk; all equal to the in-memory path, and a killed embed job resumes exactly."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks/bench_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, bench) -> Path:
    return bench.make_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.mark.parametrize("n_files,n_shards,cap", [(6, 3, None), (3, 5, None), (6, 4, 17), (1, 3, 10)])
def test_streamed_shards_hold_the_documents_one_job_reads(tmp_path, bench, n_files, n_shards, cap):
    from tttnn.data.corpus import build_pile, shard_quota
    from tttnn.steps import build_corpus_shard

    pile = bench.write_pile(tmp_path / "pile", n_files, 20, n_test=1)
    shards = []
    for s in range(n_shards):
        corpus = {"pile": {"train": pile["train"]}, "n_shards": n_shards, "max_train_docs": cap}
        build_corpus_shard(corpus, s, str(tmp_path / f"out/{s:03d}.parquet"), str(tmp_path / f"out/{s:03d}.json"))
        df = pd.read_parquet(tmp_path / f"out/{s:03d}.parquet")
        stats = json.loads((tmp_path / f"out/{s:03d}.json").read_text())
        assert stats["train_docs"] == len(df) and list(df.columns) == ["doc_id", "task", "text"]
        if cap is not None:
            assert len(df) == shard_quota(cap, n_shards, s)
        shards.append(df)
    sharded = pd.concat(shards, ignore_index=True)
    assert sharded["doc_id"].is_unique
    if cap is None:  # every document once, as the one-job reader sees them
        one, _ = build_pile(pile["train"], pile["test"], ["github"], 1, None)
        key = ["task", "text"]
        assert sorted(map(tuple, sharded[key].to_numpy())) == sorted(map(tuple, one[key].to_numpy()))
    else:
        assert len(sharded) == cap


def test_streamed_shard_writes_row_groups(tmp_path, bench):
    import pyarrow.parquet as pq

    from tttnn.data.corpus import stream_pile_shard

    pile = bench.write_pile(tmp_path / "pile", 1, 50, n_test=1)
    stats = stream_pile_shard(pile["train"], 0, 1, str(tmp_path / "000.parquet"), row_group_rows=8)
    meta = pq.ParquetFile(tmp_path / "000.parquet").metadata
    assert meta.num_rows == stats["train_docs"] > 50 and meta.num_row_groups == -(-meta.num_rows // 8)


def test_chunks_streamed_equal_chunks_of_the_whole_shard(tmp_path):
    from tttnn.data.chunk import chunk_documents
    from tttnn.steps import chunk_shard

    docs = pd.DataFrame(
        {"doc_id": [f"d{i}" for i in range(23)], "task": "t", "text": [f"w{i} " * i for i in range(23)]}
    )
    docs.to_parquet(tmp_path / "docs.parquet")
    chunk_shard(str(tmp_path / "docs.parquet"), str(tmp_path / "c.parquet"), {"mode": "document"}, "", batch_docs=5)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"), chunk_documents(docs))


def _texts(n: int, seed: int = 0) -> list[str]:
    words = _bench().vocabulary()
    rng = np.random.default_rng(seed)
    return [" ".join(words[j] for j in rng.integers(0, len(words), rng.integers(3, 60))) for _ in range(n)]


def test_killed_embed_job_resumes_exactly(tmp_path, encoder):
    from tttnn.retrieval.embed import Embedder, embed_parquet_blocks

    src = tmp_path / "chunks.parquet"
    pd.DataFrame({"text": _texts(160)}).to_parquet(src, row_group_size=25)
    out = tmp_path / "killed/000.npy"
    progress = out.with_name(".000.npy.progress.json")
    script = textwrap.dedent(f"""
        import time
        from tttnn.retrieval.embed import Embedder, embed_parquet_blocks
        emb = Embedder({str(encoder)!r}, "hf-mean", 128, "cpu")
        embed_parquet_blocks(emb, {str(src)!r}, {str(out)!r}, 4, 16, on_block=lambda done, n: time.sleep(0.5))
        """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if progress.is_file() and json.loads(progress.read_text())["done"] >= 48:
                break
            assert proc.poll() is None, "the embed job ended before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = json.loads(progress.read_text())["done"]
    assert 48 <= done < 160 and not out.exists()
    emb = Embedder(str(encoder), "hf-mean", 128, "cpu")
    seen = []
    embed_parquet_blocks(emb, str(src), str(out), 4, 16, on_block=lambda d, n: seen.append(d))
    assert seen[0] == done + 16  # resumed at the last finished block, earlier blocks not redone
    ref = tmp_path / "whole/000.npy"
    embed_parquet_blocks(emb, str(src), str(ref), 4, 16)
    a, b = np.load(out), np.load(ref)
    assert a.shape == (160, 32) and np.array_equal(a, b)
    assert not progress.exists() and not out.with_name(".000.npy.partial.npy").exists()
    # one block of all rows is what the in-memory encoder returns
    whole = tmp_path / "one/000.npy"
    embed_parquet_blocks(emb, str(src), str(whole), 4, 1000)
    assert np.array_equal(np.load(whole), emb.encode(_texts(160), 4, progress=False))


def test_partial_array_of_another_input_is_not_resumed(tmp_path, encoder):
    from tttnn.retrieval.embed import Embedder, embed_parquet_blocks

    emb = Embedder(str(encoder), "hf-mean", 128, "cpu")
    src, out = tmp_path / "c.parquet", tmp_path / "e/000.npy"
    pd.DataFrame({"text": _texts(40)}).to_parquet(src)

    def stop(done: int, n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_parquet_blocks(emb, str(src), str(out), 4, 16, on_block=stop)
    assert out.with_name(".000.npy.partial.npy").exists()
    time.sleep(0.01)
    pd.DataFrame({"text": _texts(40, seed=1)}).to_parquet(src)  # the chunks were rebuilt meanwhile
    seen = []
    embed_parquet_blocks(emb, str(src), str(out), 4, 16, on_block=lambda d, n: seen.append(d))
    assert seen == [16, 32, 40]  # started over
    embed_parquet_blocks(emb, str(src), str(tmp_path / "fresh/000.npy"), 4, 16)
    assert np.array_equal(np.load(out), np.load(tmp_path / "fresh/000.npy"))


def test_empty_shard_embeds_to_an_empty_array(tmp_path, encoder):
    from tttnn.retrieval.embed import Embedder, embed_parquet_blocks

    pd.DataFrame({"text": pd.Series([], dtype=object)}).to_parquet(tmp_path / "e.parquet")
    embed_parquet_blocks(
        Embedder(str(encoder), "hf-mean", 128, "cpu"), str(tmp_path / "e.parquet"), str(tmp_path / "e.npy")
    )
    assert np.load(tmp_path / "e.npy").shape == (0, 32)


@pytest.mark.parametrize("factory", ["Flat", "IVF8,PQ4"])
def test_index_from_disk_in_blocks_equals_in_memory(tmp_path, factory):
    from tttnn.retrieval.index import NpyRows, build_index, search

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    q = rng.normal(size=(20, 16)).astype(np.float32)
    D1, I1 = search(build_index(x, factory, train_size=500), q, 10, nprobe=4)
    D2, I2 = search(build_index(NpyRows(tmp_path / "x.npy"), factory, train_size=500, block_rows=128), q, 10, nprobe=4)
    assert np.array_equal(I1, I2) and np.array_equal(D1, D2)


def test_take_rows_reads_across_row_groups(tmp_path):
    from tttnn.retrieval.retrieve import take_rows

    pd.DataFrame({"a": range(100), "b": [f"x{i}" for i in range(100)]}).to_parquet(
        tmp_path / "t.parquet", row_group_size=7
    )
    got = take_rows(str(tmp_path / "t.parquet"), [99, 0, 13, 14, 13], ["b", "a"])
    assert got == {0: ("x0", 0), 13: ("x13", 13), 14: ("x14", 14), 99: ("x99", 99)}
    with pytest.raises(IndexError):
        take_rows(str(tmp_path / "t.parquet"), [100], ["a"])


@pytest.mark.parametrize("neighbor_text", ["chunk", "document"])
def test_search_from_files_equals_in_memory(tmp_path, neighbor_text):
    """Ids and distances in the map step, texts read by row after the merge: the same table as in memory."""
    from tttnn.retrieval.index import build_index
    from tttnn.retrieval.retrieve import MAP_COLUMNS, NEIGHBOR_COLUMNS, search_shard, search_shard_files
    from tttnn.steps import merge_shards

    rng = np.random.default_rng(1)
    qtexts = ["query zero", "query one", "query two"]
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    ids = [f"q{i}" for i in range(3)]
    pd.DataFrame({"doc_id": ids, "task": "t", "text": qtexts}).to_parquet(tmp_path / "test.parquet")
    mem_parts, file_parts, chunk_paths, doc_paths = [], [], [], []
    for s in range(2):
        n = 60
        docs = pd.DataFrame({"doc_id": [f"s{s}d{i}" for i in range(n // 2)], "task": "t"})
        docs["text"] = [f"document {s} {i}" for i in range(n // 2)]
        chunks = pd.DataFrame(
            {"chunk_id": [f"s{s}c{i}" for i in range(n)], "doc_id": [f"s{s}d{i // 2}" for i in range(n)]}
        )
        chunks["task"], chunks["n_tokens"] = "t", 2
        chunks["text"] = [f"chunk {s} {i}" for i in range(n)]
        vec = rng.normal(size=(n, 8)).astype(np.float32)
        vec[5] = queries[0] + 1e-3  # planted, but an exact copy of query 0: dropped
        chunks.loc[5, "text"] = " query zero "
        vec[7] = queries[1] + 1e-3  # planted; with whole documents, its document is a copy of query 1: dropped
        docs.loc[3, "text"] = "query one"
        vec[9] = queries[2] + 1e-3  # planted and kept
        cp, dp = tmp_path / f"chunks/{s:03d}.parquet", tmp_path / f"docs/{s:03d}.parquet"
        cp.parent.mkdir(exist_ok=True), dp.parent.mkdir(exist_ok=True)
        chunks[["chunk_id", "doc_id", "task", "text", "n_tokens"]].to_parquet(cp, row_group_size=8)
        docs.to_parquet(dp, row_group_size=8)
        chunk_paths.append(str(cp)), doc_paths.append(str(dp))
        doc_texts = dict(zip(docs["doc_id"], docs["text"])) if neighbor_text == "document" else None
        index = build_index(vec)
        mem_parts.append(search_shard(index, chunks, queries, ids, qtexts, 4, f"{s:03d}", doc_texts=doc_texts))
        (out,) = search_shard_files(
            index, str(cp), [(queries, ids, qtexts)], 4, f"{s:03d}", docs_path=str(dp) if doc_texts else None
        )
        assert list(out.columns) == MAP_COLUMNS
        file_parts.append(tmp_path / f"part{s}.parquet")
        out.to_parquet(file_parts[-1])
    for parts, name in ((mem_parts, "mem"), (file_parts, "files")):
        if name == "mem":
            for i, p in enumerate(parts):
                p.to_parquet(tmp_path / f"mem{i}.parquet")
            parts = [tmp_path / f"mem{i}.parquet" for i in range(2)]
        docs_arg = doc_paths if neighbor_text == "document" else ()
        merge_shards(
            [str(p) for p in parts],
            str(tmp_path / "test.parquet"),
            str(tmp_path / f"{name}.parquet"),
            4,
            chunk_paths,
            docs_arg,
        )
    a = pd.read_parquet(tmp_path / "mem.parquet").drop(columns="search_seconds")
    b = pd.read_parquet(tmp_path / "files.parquet")
    assert list(b.columns) == NEIGHBOR_COLUMNS
    pd.testing.assert_frame_equal(a, b.drop(columns="search_seconds"))
    top = b[b["rank"] == 0].set_index("query_id")["chunk_id"]
    assert top["q2"] in ("s0c9", "s1c9") and top["q0"] not in ("s0c5", "s1c5")
    assert (top["q1"] in ("s0c7", "s1c7")) == (neighbor_text == "chunk")


def test_scale_workflow_small(tmp_path, bench, encoder):
    """The scale benchmark in small: 4 Pile files -> 4 streamed shards holding the documents one job reads, the
    planted near-copies ranked first, and a changed batch size or device reruns nothing."""
    from tttnn.data.corpus import build_pile

    pile = bench.write_pile(tmp_path / "pile", 4, 40, n_test=2)
    cfg = bench.workflow_config(pile, encoder, tmp_path / "results", n_shards=4, n_test=2)
    bench.run_workflow(cfg, tmp_path, cores=2)
    res = tmp_path / "results"
    shards = pd.concat([pd.read_parquet(res / f"corpus/scale/train/{s:03d}.parquet") for s in range(4)])
    one, _ = build_pile(pile["train"], pile["test"], ["github"], 1, None)
    key = ["task", "text"]
    assert sorted(map(tuple, shards[key].to_numpy())) == sorted(map(tuple, one[key].to_numpy()))
    found, total = bench.planted_found(res, pile)
    assert total == 8 and found == total
    assert set(bench.peak_rss(res)) >= {"build_corpus_shard", "build_corpus", "chunk", "embed", "index", "search_shard"}
    cfg["embedder"] = {**cfg["embedder"], "batch_size": 3, "device": "cpu"}
    (tmp_path / "config2.yaml").write_text(__import__("yaml").safe_dump(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    targets = [str(res / f"neighbors/scale/tiny-doc/flat/test/{t}.parquet") for t in cfg["corpus"]["tasks"]]
    cmd = [sys.executable, "-m", "snakemake", "-n", "--configfile", str(tmp_path / "config2.yaml"), "--", *targets]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-3000:]
