"""Corpus sizes for the cost model: from what is on disk, else the config (minipile) or the Pile paper's Table 1."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tttnn.config import (
    chunking_key,
)
from tttnn.cost.archs import GiB, KiB
from tttnn.data.tasks import PILE_SET_SLUGS, shard_names

# ------------------------------------------------------------------------------------------------- corpus

# The Pile, Gao et al. 2020 (arXiv:2101.00027), Table 1: raw size (GiB), epochs, mean document size (KiB).
# The released train files hold the upsampled data (raw x epochs): 1,254.2 GiB / 5.91 KiB = 222M documents
# against the 211M rows of the published train split (and 215k in test), so counts are within ~5%.
PILE_TABLE: dict[str, tuple[float, float, float]] = {
    "pile-cc": (227.12, 1.0, 4.33),
    "pubmed-central": (90.27, 2.0, 30.55),
    "books3": (100.96, 1.5, 538.36),
    "owt2": (62.77, 2.0, 3.85),
    "arxiv": (56.21, 2.0, 46.61),
    "github": (95.16, 1.0, 5.25),
    "freelaw": (51.15, 1.5, 15.06),
    "stackexchange": (32.20, 2.0, 2.16),
    "uspto": (22.90, 2.0, 4.08),
    "pubmed-abstracts": (19.26, 2.0, 1.30),
    "gutenberg": (10.88, 2.5, 398.73),
    "opensubtitles": (12.98, 1.5, 30.48),
    "wikipedia": (6.38, 3.0, 1.11),
    "dm-math": (7.75, 2.0, 8.00),
    "ubuntu-irc": (5.52, 2.0, 545.48),
    "bookcorpus2": (6.30, 1.5, 369.87),
    "europarl": (4.59, 2.0, 68.87),
    "hackernews": (3.90, 2.0, 4.92),
    "youtubesubs": (3.73, 2.0, 22.55),
    "philpapers": (2.38, 2.0, 73.37),
    "nih": (1.89, 2.0, 2.11),
    "enron": (0.88, 2.0, 1.78),
}
assert set(PILE_TABLE) == set(PILE_SET_SLUGS.values())
# sets the hub mirror monology/pile-uncopyrighted leaves out (config/pile.yaml)
UNCOPYRIGHTED_DROPS = {"books3", "bookcorpus2", "opensubtitles", "youtubesubs", "owt2"}


def pile_subsets(sources: str | Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per Pile set present in ``sources``: (documents, bytes) of the train files, from Table 1."""
    srcs = [sources] if isinstance(sources, str) else list(sources)
    drop = UNCOPYRIGHTED_DROPS if any("uncopyrighted" in s for s in srcs) else set()
    out = {}
    for slug, (raw_gib, epochs, mean_kib) in PILE_TABLE.items():
        if slug in drop:
            continue
        size = raw_gib * epochs * GiB
        out[slug] = (size / (mean_kib * KiB), size)
    return out


@dataclass
class Corpus:
    """Sizes the cost model needs, with where they came from."""

    source: str
    train_docs: float
    train_bytes: float
    chunks: float
    chunk_bytes: float  # mean text bytes of a chunk
    embed_tokens: float  # mean embedder tokens of a chunk (after truncation)
    test_docs: dict[str, int]
    valid_docs: dict[str, int]
    test_bytes: dict[str, float]  # mean bytes of a test document, by task
    neighbor_bytes: dict[str, float]  # mean bytes of a neighbour's training text, by the test document's task
    bytes_per_token: float  # bytes per language-model token
    test_split_bytes: float = 0.0  # bytes read to sample the test documents (the Pile: its whole test split)


def _parquet_rows_bytes(paths: Sequence[Path], column: str = "text") -> tuple[int, float]:
    """Rows and uncompressed bytes of one column of parquet files, from their metadata only."""
    import pyarrow.parquet as pq

    rows, size = 0, 0.0
    for p in paths:
        meta = pq.ParquetFile(p).metadata
        rows += meta.num_rows
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                if rg.column(c).path_in_schema == column:
                    size += rg.column(c).total_uncompressed_size
    return rows, size


def corpus_estimate(config: dict[str, Any], cal: dict[str, Any]) -> Corpus:
    """Corpus sizes: from results/ when the corpus (and its chunks) are built, else from the config
    (minipile: documents x the default run's chunks per document; the Pile: Table 1, capped)."""
    c, text = config["corpus"], cal["text"]
    tasks = c["tasks"]
    emb = config["embedder"]
    chunk = config.get("chunk", {})
    window = chunk.get("mode", "document") == "window"
    size, stride = chunk.get("size", 256), chunk.get("stride") or chunk.get("size", 256)
    max_seq = emb.get("max_seq_length", 256)
    n_test, n_valid = c.get("n_test_docs", 4), c.get("n_valid_docs", 2)
    root = Path(config.get("results_dir", "results"))
    base = root / "corpus" / c["name"]
    if c["source"] == "pile":
        bpt = text["pile_bytes_per_token"]
        subsets = pile_subsets(c.get("pile", {}).get("train", "monology/pile-uncopyrighted"))
        docs = sum(n for n, _ in subsets.values())
        total = sum(b for _, b in subsets.values())
        cap = c.get("max_train_docs")
        scale = min(1.0, cap / docs) if cap else 1.0
        mean_kib = {t: PILE_TABLE[t][2] for t in tasks}
        test_bytes = {t: mean_kib[t] * KiB for t in tasks}
        est = Corpus(
            source="Pile paper Table 1" + (f", capped at {cap:,} documents" if scale < 1 else ""),
            train_docs=docs * scale,
            train_bytes=total * scale,
            chunks=docs * scale,
            chunk_bytes=total / docs,
            embed_tokens=sum(n * min(max_seq, b / n / bpt) for n, b in subsets.values()) / docs,
            test_docs={t: n_test for t in tasks},
            valid_docs={t: n_valid for t in tasks},
            test_bytes=test_bytes,
            neighbor_bytes=dict(test_bytes) if config["retrieve"].get("neighbor_text") == "document" else {},
            bytes_per_token=bpt,
            test_split_bytes=sum(PILE_TABLE[s][0] * PILE_TABLE[s][1] * GiB for s in PILE_TABLE)
            * text["pile_test_fraction"],
        )
        if window:  # windows of the embedder's tokens (~ the LM's on English text)
            est.chunks = est.train_bytes / bpt / stride
            est.chunk_bytes, est.embed_tokens = size * bpt, float(min(size, max_seq))
    else:
        mp = c.get("minipile", {})
        bpt = text["minipile_bytes_per_token"]
        n_docs = (c.get("max_train_docs") or 500) * len(tasks)
        per_doc = text["minipile_chunks_per_doc_at_128"] * 128 / stride * mp.get("max_chars", 4000) / 4000
        fill = text["minipile_chunk_fill"]
        chunk_tokens = min(size, max_seq) * fill if window else min(max_seq, mp.get("max_chars", 4000) * 0.7 / bpt)
        doc_bytes = text["minipile_chunks_per_doc_at_128"] * 128 * fill * bpt * mp.get("max_chars", 4000) / 4000
        test_b = float(mp.get("test_max_chars", 2000))
        est = Corpus(
            source="estimated from the config (corpus not built)",
            train_docs=n_docs,
            train_bytes=n_docs * doc_bytes,
            chunks=n_docs * per_doc if window else n_docs,
            chunk_bytes=size * fill * bpt if window else doc_bytes,
            embed_tokens=chunk_tokens,
            test_docs={t: n_test for t in tasks},
            valid_docs={t: n_valid for t in tasks},
            test_bytes={t: test_b for t in tasks},
            neighbor_bytes={},
            bytes_per_token=bpt,
        )
    # what is on disk overrides the estimate
    manifest = base / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        est.source = f"on disk ({manifest})"
        est.test_docs = {t: int(m.get("test_docs", {}).get(t, 0)) for t in tasks}
        est.valid_docs = {t: int(m.get("valid_docs", {}).get(t, 0)) for t in tasks}
        train_files = [base / "train" / f"{s}.parquet" for s in shard_names(c["n_shards"])]
        if all(p.is_file() for p in train_files):
            est.train_docs, est.train_bytes = _parquet_rows_bytes(train_files)
        for t in tasks:
            p = base / "test" / f"{t}.parquet"
            if p.is_file():
                import pandas as pd

                texts = pd.read_parquet(p, columns=["text"])["text"]
                if len(texts):
                    est.test_bytes[t] = float(texts.str.encode("utf-8").str.len().mean())
        if not window:
            est.chunks = est.train_docs
    chunk_files = [
        root / "chunks" / c["name"] / chunking_key(config) / f"{s}.parquet" for s in shard_names(c["n_shards"])
    ]
    if all(p.is_file() for p in chunk_files):
        import pandas as pd

        est.chunks, cbytes = _parquet_rows_bytes(chunk_files)
        est.chunk_bytes = cbytes / max(est.chunks, 1)
        n_tok = pd.concat([pd.read_parquet(p, columns=["n_tokens"]) for p in chunk_files])["n_tokens"]
        est.embed_tokens = float(n_tok.clip(upper=max_seq).mean()) if len(n_tok) else est.embed_tokens
        est.source += "; chunks on disk"
    if not est.neighbor_bytes:
        if window:
            nb = est.embed_tokens * text["lm_tokens_per_embedder_token"] * bpt
        else:
            nb = est.chunk_bytes
        est.neighbor_bytes = {t: nb for t in tasks}
    return est
