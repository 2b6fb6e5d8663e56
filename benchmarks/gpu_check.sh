#!/usr/bin/env bash
# GPU check for batched TTT (issues 11, 19), one script, under ~10 minutes on an H100:
#   1. exactness on CUDA: BatchedTTTRunner (B=4) against TTTRunner (B=1), float32, TF32 off, dropout off,
#      on the tiny test model and on a gpt2-sized random model (ragged neighbours, NaN-free);
#   2. no vmap fallback on CUDA: a batched training step and evaluation of tiny llama / gpt2 / gemma3 / qwen2
#      models and of a gpt2-sized one at 1024 tokens raise no "batching rule" warning (a per-copy loop);
#   3. the speedup of B = 8 over B = 1 for a gpt2-sized model at 1024 tokens, float32 ($OUT/speedup_b8.json);
#   4. the benchmark grid: ms per neighbour for gpt2 / gpt2-large / gpt-neo-1.3B sized random models,
#      B = 1, 4, 8, 16, 32, float32 / TF32 / bfloat16 (autocast and pure), one torch.compile row;
#   5. the embedder by embedder.dtype: a RoBERTa-large-shaped encoder at 512 tokens in float32, bfloat16 and
#      float16, seconds for 4,200 texts and the neighbour overlap with float32 ($OUT/embed_dtype.json).
# Every step writes JSON lines to $OUT (default ./gpu_results); a step that runs out of time is cut by
# `timeout` and the next one starts, so partial results still come back. Exit status 1 when any fallback
# warning was raised (step 2 failed, or a benchmark row has "fallback_warnings" > 0).
#   usage: OUT=/some/dir bash benchmarks/gpu_check.sh        (PY=path/to/python to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_results}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$OUT"
export PYTHONPATH="src:tests:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
"$PY" -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())' \
    >>"$OUT/gpu.txt" 2>&1

echo "== exactness" >&2
timeout 100 "$PY" - >"$OUT/exactness.jsonl" 2>"$OUT/exactness.log" <<'EOF'
import json, os, tempfile, time
from pathlib import Path
import torch
from conftest import make_tiny_gpt2
from transformers import GPT2Config, GPT2LMHeadModel
from tttnn.core.batched import BatchedTTTRunner
from tttnn.models.load import load_model
from tttnn.core.ttt import Document, Neighbor, TTTConfig, TTTRunner
from test_batched import _docs

class Tok:
    eos_token_id = bos_token_id = 0
    def get_vocab(self):
        return {"<|endoftext|>": 0}

def no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model

def compare(name, model, tok, docs, cfg, B):
    single, batched = TTTRunner(model, tok, cfg), BatchedTTTRunner(model, tok, cfg, B)
    t = time.perf_counter(); a = single.run_batch(docs); t1 = time.perf_counter() - t
    t = time.perf_counter(); b = batched.run_batch(docs); t2 = time.perf_counter() - t
    rel = max(abs(x - y) / abs(x) for ra, rb in zip(a, b) for x, y in zip(ra["loglik"], rb["loglik"]))
    same_fields = all(sorted(ra) == sorted(rb) and ra["checkpoints"] == rb["checkpoints"] for ra, rb in zip(a, b))
    print(json.dumps({"check": name, "B": B, "max_rel_loglik_diff": rel, "pass": rel <= 1e-5 and same_fields,
                      "same_fields": same_fields, "seconds_b1": round(t1, 2), "seconds_batched": round(t2, 2),
                      "device": torch.cuda.get_device_name() if dev == "cuda" else dev}), flush=True)

dev = os.environ.get("DEVICE", "cuda")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
d = make_tiny_gpt2(Path(tempfile.mkdtemp()) / "tiny")
model, tok = load_model(str(d), device=dev)
compare("tiny-gpt2", no_dropout(model), tok, _docs(), TTTConfig(lr=1e-3, k=3, max_length=32, seed=3), 4)
compare("tiny-gpt2-one-window", model, tok, _docs(),
        TTTConfig(lr=1e-3, k=3, max_length=32, seed=3, max_windows_per_neighbor=1, eval_at=[1, 3]), 3)
if os.environ.get("QUICK"):
    raise SystemExit
torch.manual_seed(0)
with torch.device(dev):
    big = no_dropout(GPT2LMHeadModel(GPT2Config(n_positions=1024)))
g = torch.Generator().manual_seed(1)


class IdTok(Tok):  # a document's text is its token ids, space-separated
    def __call__(self, text, add_special_tokens=False, verbose=False):
        return {"input_ids": [int(x) for x in text.split()]}


ids = lambda n: " ".join(str(int(x)) for x in torch.randint(1, 50257, (n,), generator=g))
docs = [Document(f"d{i}", ids(300 + 400 * i), [Neighbor(f"n{j}", ids(200 + 150 * j + 100 * i)) for j in range(3 - i % 2)])
        for i in range(4)]
compare("gpt2-sized-random-1024", big, IdTok(), docs, TTTConfig(lr=2e-5, k=3, max_length=1024, seed=0), 4)
EOF
echo "exactness rc=$?" >&2
[ -n "${QUICK:-}" ] && { cat "$OUT"/exactness.jsonl; exit 0; }

echo "== fallbacks" >&2
timeout 120 "$PY" - >"$OUT/fallbacks.jsonl" 2>"$OUT/fallbacks.log" <<'EOF'
import json, os, sys, tempfile, warnings
from pathlib import Path
import torch
from conftest import make_tiny_family, make_tiny_gpt2
from transformers import GPT2Config, GPT2LMHeadModel
from tttnn.core.batched import BATCHED_ATTENTION, BatchedTTTRunner
from tttnn.core.metrics import rolling_windows
from tttnn.models.load import load_model
from tttnn.core.ttt import TTTConfig

class Tok:
    eos_token_id = bos_token_id = 0
    def get_vocab(self):
        return {"<|endoftext|>": 0}

def check(name, model, tok, T, B=4):
    cfg = TTTConfig(lr=1e-3, k=1, max_length=T)
    runner = BatchedTTTRunner(model, tok, cfg, B)
    runner.reset_copies(B)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    wins = [torch.randint(1, vocab, (T - 7 * s,), generator=g).tolist() for s in range(B - 1)] + [None]
    doc = torch.randint(1, vocab, (2 * T + 5,), generator=g).tolist()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.train_copies(wins)
        runner.evaluate_copies([list(rolling_windows(doc, runner.prefix, T))] * B)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    msgs = sorted({str(w.message)[:200] for w in caught if "batching rule" in str(w.message)})
    print(json.dumps({"check": "fallbacks", "model": name, "tokens": T, "B": B, "attention": BATCHED_ATTENTION,
                      "fallback_warnings": sum("batching rule" in str(w.message) for w in caught),
                      "messages": msgs, "pass": not msgs, "device": dev}), flush=True)
    runner.reset_copies(0)
    return not msgs

dev = os.environ.get("DEVICE", "cuda")
ok = True
tmp = Path(tempfile.mkdtemp())
for family in ("llama", "gpt2", "gemma3", "qwen2"):
    path = make_tiny_gpt2(tmp / family) if family == "gpt2" else make_tiny_family(family, tmp / family)
    model, tok = load_model(str(path), device=dev)
    ok &= check(f"tiny-{family}", model, tok, 64)
if not os.environ.get("QUICK"):
    torch.manual_seed(0)
    with torch.device(dev):
        big = GPT2LMHeadModel(GPT2Config(n_positions=1024))
    ok &= check("gpt2-sized-random", big, Tok(), 1024)
sys.exit(0 if ok else 1)
EOF
fallback_rc=$?
echo "fallbacks rc=$fallback_rc" >&2

echo "== B=8 over B=1 (gpt2, 1024 tokens)" >&2
timeout 120 "$PY" benchmarks/bench_ttt.py --device cuda --models gpt2-sized-random --lengths 1024 \
    --settings float32:1 float32:8 --repeats 3 >"$OUT/bench_b8.jsonl" 2>"$OUT/bench_b8.log"
echo "b8 rc=$?" >&2
"$PY" - "$OUT/bench_b8.jsonl" >"$OUT/speedup_b8.json" <<'EOF'
import json, sys
rows = {r["B"]: r for r in map(json.loads, open(sys.argv[1])) if "error" not in r}
b1, b8 = rows.get(1), rows.get(8)
out = {"model": "gpt2-sized-random", "tokens": 1024, "dtype": "float32", "machine": (b1 or b8 or {}).get("machine")}
if b1 and b8:
    for k in ("train_ms", "eval_ms", "per_neighbor_ms"):
        out[f"b1_{k}"], out[f"b8_{k}"] = b1[k], b8[k]
        out[f"speedup_{k.removesuffix('_ms')}"] = round(b1[k] / b8[k], 2)
    out["fallback_warnings"] = b1.get("fallback_warnings", 0) + b8.get("fallback_warnings", 0)
print(json.dumps(out))
EOF
cat "$OUT/speedup_b8.json" >&2

echo "== speed grid" >&2
GRID="float32:1:tf32 bfloat16:1 bfloat16-pure:1 float32:4 float32:8 float32:16 float32:32 float32:8:tf32 float32:32:tf32 bfloat16:4 bfloat16:8 bfloat16:16 bfloat16:32 bfloat16-pure:16"
timeout 150 "$PY" benchmarks/bench_ttt.py --device cuda --models gpt2-sized-random --lengths 1024 256 \
    --settings $GRID --repeats 3 >"$OUT/bench_gpt2.jsonl" 2>"$OUT/bench_gpt2.log"
echo "gpt2 rc=$?" >&2
timeout 100 "$PY" benchmarks/bench_ttt.py --device cuda --models gpt2-large-sized-random --lengths 1024 \
    --settings float32:1:tf32 bfloat16:1 bfloat16-pure:1 float32:4 bfloat16:4 bfloat16-pure:4 float32:8 bfloat16:8 \
    float32:16 float32:32 --repeats 3 >"$OUT/bench_gpt2_large.jsonl" 2>"$OUT/bench_gpt2_large.log"
echo "gpt2-large rc=$?" >&2
timeout 100 "$PY" benchmarks/bench_ttt.py --device cuda --models gpt-neo-1.3b-sized-random --lengths 1024 \
    --settings float32:1:tf32 bfloat16:1 bfloat16-pure:1 float32:4 bfloat16:4 bfloat16-pure:4 float32:8 float32:16 \
    float32:32 --repeats 3 >"$OUT/bench_gpt_neo.jsonl" 2>"$OUT/bench_gpt_neo.log"
echo "gpt-neo rc=$?" >&2
timeout 90 "$PY" benchmarks/bench_ttt.py --device cuda --models gpt2-sized-random --lengths 1024 \
    --settings float32:1:tf32:compile float32:8:tf32:compile --repeats 3 >"$OUT/bench_compile.jsonl" \
    2>"$OUT/bench_compile.log"
echo "compile rc=$?" >&2
echo "== embedder by dtype (RoBERTa-large shape, 512 tokens)" >&2
timeout 240 "$PY" benchmarks/embed_dtype.py --device cuda --random-roberta-large --max-seq-length 512 \
    --batch-size 128 --out "$OUT/embed_dtype.json" >"$OUT/embed_dtype.log" 2>&1
echo "embed dtype rc=$?" >&2
cat "$OUT"/*.jsonl "$OUT"/embed_dtype.json
# a fallback anywhere fails the check: the fallback step, or any benchmark row that counted one
bad_rows=$(cat "$OUT"/bench_*.jsonl 2>/dev/null | grep -c '"fallback_warnings": [1-9]')
echo "fallback step rc=$fallback_rc; benchmark rows with fallback warnings: $bad_rows" >&2
[ "$fallback_rc" -eq 0 ] && [ "$bad_rows" -eq 0 ]
