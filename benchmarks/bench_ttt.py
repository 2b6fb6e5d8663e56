"""Benchmark (not a test): milliseconds per TTT training step and per evaluation, printed as JSON.

    python benchmarks/bench_ttt.py [--device cpu|cuda] [--lengths 256 1024] [--repeats 3]

Models: the offline default (SmolLM2-135M, dequantized from its GGUF) and a randomly initialised
gpt2-sized model (124M; no download needed).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def gpt2_sized():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_positions=1024))


def smollm2():
    from tttnn.models import OFFLINE_MODEL, load_model

    return load_model(OFFLINE_MODEL, device="cpu")[0]


def bench(model, device: str, T: int, repeats: int, dtype: torch.dtype) -> dict:
    from tttnn.metrics import Window, windows_loglik

    model = model.to(device=device, dtype=dtype)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, T), generator=torch.Generator().manual_seed(0)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, eps=1e-8, weight_decay=0.01)
    win = [Window(ids[0].tolist(), ids[0].tolist())]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def train_step():
        model.train()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def evaluate():
        model.eval()
        windows_loglik(model, win)

    out = {}
    for name, fn in (("train_step_ms", train_step), ("eval_ms", evaluate)):
        fn()  # warm-up
        sync()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t) * 1000)
        out[name] = round(sorted(times)[len(times) // 2], 1)
    if device.startswith("cuda"):
        out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gpt2-sized-random"])
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    makers = {"smollm2-135m": smollm2, "gpt2-sized-random": gpt2_sized}
    machine = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    )
    results = []
    for name in args.models:
        model = makers[name]()
        for T in args.lengths:
            r = bench(model, args.device, T, args.repeats, dtype)
            results.append(
                {"model": name, "device": args.device, "machine": machine, "dtype": args.dtype, "tokens": T, **r}
            )
            print(json.dumps(results[-1]), flush=True)
        del model


if __name__ == "__main__":
    main()
