"""Benchmark (not a test): cost per neighbour (one training step on a neighbour window + one evaluation of the
document, both of ``tokens`` tokens) for the paper-style loop (float32, batch 1) and other settings, side by
side in one run; JSON lines on stdout.

    python benchmarks/bench_ttt.py [--device cpu|cuda] [--models ...] [--lengths 256 1024]
                                   [--settings float32:1 float32:4 bfloat16:1 bfloat16-pure:1] [--repeats 2]
    python benchmarks/bench_ttt.py --batching      # CPU: SmolLM2, B = 1, 2, 4, 8 at 128 and 256 tokens, 2 threads
    python benchmarks/bench_ttt.py --bpb [--model-path /tmp/smollm2]   # bpb of each dtype against float32

A setting is ``dtype:B[:tf32][:compile][:eager|:sdpa-math]``; ``float32:1`` is the paper-style loop
(:class:`TTTRunner`), ``B > 1`` runs :class:`BatchedTTTRunner` (B documents in lock-step; the time is divided by
B) with its attention inside the batched forward (default :data:`tttnn.core.batched.BATCHED_ATTENTION`). Every row
counts the vmap fallback warnings ("batching rule": a per-copy loop) raised while it ran. ``--profile N``
prints the N operations with the most self time in one training step and one evaluation of each setting to
stderr. Models: the offline default (SmolLM2-135M) and randomly initialised gpt2 (124M), gpt2-large (774M) and
gpt-neo-1.3B sized models (no download). On CUDA, settings that do not fit in memory are reported with
``"error": "oom"``; on CPU, B copies that would not fit in the memory available are skipped
(``"error": "memory"``: 16 bytes per parameter per copy, plus activations).
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import math
import platform
import statistics
import sys
import time
import warnings
from typing import Any

import torch

from tttnn.core.batched import ATTENTION_CHOICES, BATCHED_ATTENTION, BatchedTTTRunner
from tttnn.core.metrics import rolling_windows
from tttnn.report.stats import aggregate
from tttnn.core.settings import TTTConfig
from tttnn.core.ttt import Document, Neighbor, TTTRunner

PAPER = "float32:1"
BATCHING = ["float32:1", "float32:2", "float32:4", "float32:8", "float32:4:sdpa-math"]
FALLBACK = "batching rule"  # vmap's warning when an operator has no batching rule and runs copy by copy


class StubTokenizer:
    """Enough of a tokenizer for runners fed token ids directly (random models have none)."""

    eos_token_id = bos_token_id = 0

    def get_vocab(self) -> dict[str, int]:
        return {"<|endoftext|>": 0}


def random_model(kind: str, device: str) -> torch.nn.Module:
    """A randomly initialised model of a paper model's size, built directly on ``device``."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        if kind == "gpt2-sized-random":
            return GPT2LMHeadModel(GPT2Config(n_positions=1024))
        if kind == "gpt2-large-sized-random":
            return GPT2LMHeadModel(GPT2Config(n_positions=1024, n_embd=1280, n_layer=36, n_head=20))
        if kind == "gpt-neo-1.3b-sized-random":
            return GPTNeoForCausalLM(
                GPTNeoConfig(hidden_size=2048, num_layers=24, num_heads=16, attention_types=[[["global", "local"], 12]])
            )
    raise ValueError(kind)


def load(kind: str, device: str, model_path: str | None) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` for a benchmark model name."""
    if kind == "smollm2-135m":
        from tttnn.models.load import OFFLINE_MODEL, load_model

        return load_model(model_path or OFFLINE_MODEL, device=device)
    return random_model(kind, device), StubTokenizer()


def parse_setting(s: str) -> dict[str, Any]:
    """``dtype:B[:tf32][:compile][:eager|:sdpa-math]`` as TTTConfig fields plus ``B`` and ``attention``."""
    parts = s.split(":")
    unknown = set(parts[2:]) - {"tf32", "compile", *ATTENTION_CHOICES}
    if unknown:
        raise SystemExit(f"setting {s!r}: unknown option(s) {sorted(unknown)}")
    attention = next((p for p in parts[2:] if p in ATTENTION_CHOICES), BATCHED_ATTENTION)
    return {
        "dtype": parts[0],
        "B": int(parts[1]),
        "tf32": "tf32" in parts[2:],
        "compile": "compile" in parts[2:],
        "attention": attention if int(parts[1]) > 1 else "model's own",
    }


def mem_available_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def fits_on_cpu(model: torch.nn.Module, B: int, T: int) -> bool:
    """Whether B stacked copies (weights, 2 AdamW moments, gradients: 16 bytes per parameter) and the logits of a
    step fit in the memory available now, with 1 GiB to spare (others share this machine)."""
    avail = mem_available_bytes()
    if avail is None or B == 1:
        return True
    n = sum(p.numel() for p in model.parameters())
    need = 16 * n * B + 4 * 4 * B * T * model.config.vocab_size + 2**30
    return need < avail


def release_memory() -> None:
    """Free the last setting's memory and return glibc's freed heap to the OS (the next memory check sees it)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_flags() -> str:
    """Which of AVX-512 BF16 and AMX the CPU has (bf16 and batched matmul speed depend on them)."""
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return "unknown"
    have = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return " ".join(have) or "no avx512/amx"


def machine_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name} ({cpu_flags()}), {torch.get_num_threads()} threads"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def profile_top(fn, n: int, title: str) -> None:
    """Print the ``n`` operations with the most self time in one call of ``fn`` to stderr."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts, record_shapes=True) as prof:
        fn()
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by=key, row_limit=n, max_name_column_width=40, max_shapes_column_width=60
    )
    print(f"== profile: {title}\n{table}", file=sys.stderr, flush=True)


def bench_setting(
    model, tok, device: str, T: int, setting: dict[str, Any], repeats: int, profile: int = 0, title: str = ""
) -> dict[str, Any]:
    """Median ms of one training step and one evaluation for every document of a batch, per document."""
    cfg = TTTConfig(max_length=T, dtype=setting["dtype"], tf32=setting["tf32"], compile=setting["compile"])
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = setting["tf32"]
    B = setting["B"]
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    window = torch.randint(0, vocab, (T,), generator=g).tolist()
    doc = torch.randint(0, vocab, (T,), generator=g).tolist()
    runner: TTTRunner
    if B == 1:
        runner = TTTRunner(model, tok, cfg)
        runner.reset()

        def train() -> None:
            runner.train_step(window)

        def evaluate() -> None:
            runner.evaluate(doc)

    else:
        runner = BatchedTTTRunner(model, tok, cfg, B, attention=setting["attention"])
        runner.reset_copies(B)
        wins = list(rolling_windows(doc, runner.prefix, T))

        def train() -> None:
            runner.train_copies([window] * B)

        def evaluate() -> None:
            runner.evaluate_copies([wins] * B)

    try:
        out: dict[str, Any] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for name, fn in (("train_ms", train), ("eval_ms", evaluate)):
                fn()  # warm-up (and compilation; the first step moves the copies to their gradients' layout)
                sync(device)
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    fn()
                    sync(device)
                    times.append((time.perf_counter() - t) * 1000 / B)
                out[name] = round(statistics.median(times), 2)
                if profile:
                    profile_top(fn, profile, f"{title} {name[:-3]} (one call, {B} document(s))")
        out["per_neighbor_ms"] = round(out["train_ms"] + out["eval_ms"], 2)
        out["fallback_warnings"] = sum(FALLBACK in str(w.message) for w in caught)
        if device.startswith("cuda"):
            out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        return out
    finally:
        pristine = runner.pristine
        if isinstance(runner, BatchedTTTRunner):
            runner.reset_copies(0)
        del runner
        model.to(torch.float32)  # bfloat16-pure casts the model: give the next setting the float32 weights back
        model.load_state_dict(pristine)
        del pristine
        release_memory()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def speed(args: argparse.Namespace) -> None:
    """The speed grid: every model, length and setting; one JSON line each."""
    machine = machine_name(args.device)
    settings = [PAPER] + [s for s in args.settings if s != PAPER]
    for kind in args.models:
        model, tok = load(kind, args.device, args.model_path)
        n_params = sum(p.numel() for p in model.parameters())
        for T in args.lengths:
            paper_ms = None
            for s in settings:
                st = parse_setting(s)
                row: dict[str, Any] = {
                    "model": kind,
                    "params_m": round(n_params / 1e6),
                    "device": args.device,
                    "machine": machine,
                    "tokens": T,
                    "setting": s,
                    **st,
                }
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                try:
                    if args.device == "cpu" and not fits_on_cpu(model, st["B"], T):
                        row["error"] = "memory"
                        print(json.dumps(row), flush=True)
                        continue
                    title = f"{kind} {T} tokens {s}"
                    row.update(bench_setting(model, tok, args.device, T, st, args.repeats, args.profile, title))
                    if s == PAPER:
                        paper_ms = row["per_neighbor_ms"]
                    if paper_ms:
                        row["speedup_vs_paper"] = round(paper_ms / row["per_neighbor_ms"], 2)
                except torch.cuda.OutOfMemoryError:
                    row["error"] = "oom"
                except Exception as e:  # a failing option (e.g. compile) must not end the grid
                    row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                print(json.dumps(row), flush=True)
        del model
        gc.collect()


def real_documents(n_docs: int, k: int, chars: int) -> list[Document]:
    """Python files of the standard library: ``n_docs`` documents, each with ``k`` other files as neighbours."""
    files = sorted(glob.glob("/usr/lib/python3*/[a-z]*.py"))
    files = [f for f in files if 4000 < len(open(f, errors="replace").read()) < 60000]
    texts = {f: open(f, errors="replace").read() for f in files[: n_docs + n_docs * k : 1]}
    names = list(texts)
    docs = []
    for i in range(n_docs):
        doc = names[i]
        nbs = names[n_docs + i * k : n_docs + (i + 1) * k]
        docs.append(Document(doc, texts[doc][:chars], [Neighbor(n, texts[n], float(r)) for r, n in enumerate(nbs)]))
    return docs


def bpb(args: argparse.Namespace) -> None:
    """bpb after 0 and k neighbours for each setting on real text, and its difference to float32 batch 1."""
    model, tok = load("smollm2-135m", args.device, args.model_path)
    docs = real_documents(args.docs, args.k, args.doc_chars)
    machine = machine_name(args.device)
    settings = [PAPER] + [s for s in args.settings if s != PAPER]
    ref: list[float] | None = None
    for s in settings:
        st = parse_setting(s)
        cfg = TTTConfig(
            max_length=args.max_length,
            k=args.k,
            max_windows_per_neighbor=1,
            lr=args.lr,
            dtype=st["dtype"],
            tf32=st["tf32"],
            compile=st["compile"],
        )
        runner = TTTRunner(model, tok, cfg) if st["B"] == 1 else BatchedTTTRunner(model, tok, cfg, st["B"])
        t = time.perf_counter()
        recs = runner.run_batch(docs)
        wall = time.perf_counter() - t
        curve = [
            aggregate([r["loglik"][j] for r in recs], [r["n_bytes"] for r in recs], [r["n_words"] for r in recs])[
                "bits_per_byte"
            ]
            for j in range(args.k + 1)
        ]
        ref = ref or curve
        row = {
            "model": "smollm2-135m",
            "machine": machine,
            "setting": s,
            "docs": len(docs),
            "k": args.k,
            "max_length": args.max_length,
            "bpb_0": round(curve[0], 5),
            "bpb_k": round(curve[-1], 5),
            "max_abs_bpb_diff_vs_float32": float(f"{max(abs(a - b) for a, b in zip(curve, ref)):.6f}"),
            "seconds": round(wall, 1),
            "seconds_per_neighbor_per_doc": round(wall / (len(docs) * args.k), 3),
        }
        print(json.dumps(row), flush=True)
        runner.restore_weights()
        model.to(torch.float32)
        model.load_state_dict(runner.pristine)
        del runner
        gc.collect()
    assert ref is not None and all(math.isfinite(x) for x in ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gpt2-sized-random"])
    ap.add_argument("--model-path", default=None, help="SmolLM2 as a converted directory (faster than the GGUF)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--settings", nargs="+", default=[PAPER, "float32:4", "bfloat16:1", "bfloat16-pure:1"])
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per setting (default 2; --batching 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: 2 on CPU, torch's on CUDA)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print each setting's top N operations")
    ap.add_argument(
        "--batching",
        action="store_true",
        help="the batching table: smollm2-135m, 128 and 256 tokens, B = 1, 2, 4, 8 (+ B = 4 with sdpa-math), float32",
    )
    ap.add_argument("--bpb", action="store_true", help="bpb of each setting on real text instead of speed")
    ap.add_argument("--docs", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--doc-chars", type=int, default=4000, help="each test document's first characters")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    if args.batching:
        args.models, args.lengths, args.settings = ["smollm2-135m"], [128, 256], BATCHING
        args.repeats = args.repeats or 3
    args.repeats = args.repeats or 2
    threads = args.threads or (2 if args.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    if args.device == "cpu":
        torch.manual_seed(0)
    bpb(args) if args.bpb else speed(args)


if __name__ == "__main__":
    main()
