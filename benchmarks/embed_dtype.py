"""Do half-precision embeddings keep the neighbours? float32 against bfloat16 and float16 on the offline corpus.

Index: the mini-Pile's train documents, queries: its test documents (both truncated by the embedder), exact L2
search (faiss Flat). For each half precision against float32: the mean overlap of the top-k lists (k = 20, 50),
the share of queries whose rank-1 neighbour is the same, and the largest change of a float32 top-k neighbour's
plain L2 distance (absolute and relative to it). ``--random-roberta-large`` measures a randomly initialised
encoder of RoBERTa-large's shape (24 layers, 1024 wide; the paper's embedder is not offline) with mean pooling.

    python benchmarks/embed_dtype.py --out benchmarks/results/embed_dtype_minilm.json
    python benchmarks/embed_dtype.py --random-roberta-large --max-seq-length 64 --max-train-docs 150 \
        --n-test-docs 15 --out benchmarks/results/embed_dtype_roberta_large_random.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from tttnn.data.minipile import build_minipile
from tttnn.retrieval.embed import OFFLINE_EMBEDDER, Embedder

TASKS = ["github", "dm-math", "freelaw", "stackexchange"]


def random_roberta_large(out: Path, tokenizer_spec: str) -> Path:
    """A RoBERTa-large-shaped encoder with random weights (seed 0) and the offline embedder's tokenizer."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    from tttnn.models.load import resolve_spec

    tok = AutoTokenizer.from_pretrained(resolve_spec(tokenizer_spec))
    torch.manual_seed(0)
    cfg = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=514,
        pad_token_id=tok.pad_token_id,
    )
    RobertaModel(cfg, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _device_name(device: str) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def compare(ref: np.ndarray, ref_q: np.ndarray, vec: np.ndarray, q: np.ndarray, ks: list[int]) -> dict:
    """Neighbour agreement of ``vec``/``q`` with the float32 ``ref``/``ref_q``."""
    kmax = max(ks)
    a, b = faiss.IndexFlatL2(ref.shape[1]), faiss.IndexFlatL2(vec.shape[1])
    a.add(ref)
    b.add(vec)
    _, ia = a.search(ref_q, kmax)
    _, ib = b.search(q, kmax)
    out: dict = {f"overlap@{k}": float(np.mean([len(set(x[:k]) & set(y[:k])) / k for x, y in zip(ia, ib)])) for k in ks}
    out["rank1_same"] = float(np.mean(ia[:, 0] == ib[:, 0]))
    # the float32 top-k neighbours' plain L2 distances, in each precision's own vectors
    d32 = np.linalg.norm(ref[ia] - ref_q[:, None, :], axis=2)
    d16 = np.linalg.norm(vec[ia] - q[:, None, :], axis=2)
    out["max_abs_distance_change"] = float(np.abs(d16 - d32).max())
    out["max_rel_distance_change"] = float((np.abs(d16 - d32) / np.maximum(d32, 1e-12)).max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embedder", default=OFFLINE_EMBEDDER)
    ap.add_argument("--kind", default="sentence-transformers")
    ap.add_argument("--random-roberta-large", action="store_true")
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--max-train-docs", type=int, default=1000, help="indexed documents per task")
    ap.add_argument("--n-test-docs", type=int, default=50, help="queries per task")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    ap.add_argument("--ks", nargs="+", type=int, default=[20, 50])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu_check.sh times both precisions)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    train, test = build_minipile(TASKS, n_test_docs=args.n_test_docs, max_train_docs=args.max_train_docs)
    texts, queries = train["text"].tolist(), test["text"].tolist()
    spec, kind, name = args.embedder, args.kind, "all-MiniLM-L6-v2"
    tmp = tempfile.TemporaryDirectory()
    if args.random_roberta_large:
        spec, kind, name = str(random_roberta_large(Path(tmp.name), args.embedder)), "hf-mean", "RoBERTa-large shape, random"
    vecs, secs = {}, {}
    for dtype in args.dtypes:
        emb = Embedder(spec, kind, args.max_seq_length, args.device, dtype=dtype)
        emb.encode(texts[: args.batch_size], args.batch_size, False)  # warm-up (CUDA kernels, allocator)
        t0 = time.perf_counter()
        vecs[dtype] = (emb.encode(texts, args.batch_size, False), emb.encode(queries, args.batch_size, False))
        secs[dtype] = time.perf_counter() - t0
        print(f"{dtype}: {len(texts) + len(queries)} texts in {secs[dtype]:.1f} s", flush=True)
    ref, ref_q = vecs["float32"]
    result = {
        "embedder": name,
        "max_seq_length": args.max_seq_length,
        "index_docs": len(texts),
        "queries": len(queries),
        "device": _device_name(args.device),
        "seconds": secs,
        "vs_float32": {d: compare(ref, ref_q, *vecs[d], args.ks) for d in args.dtypes if d != "float32"},
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
