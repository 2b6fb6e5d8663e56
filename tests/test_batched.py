"""Batched TTT across documents equals the batch-1 loop: ragged windows, documents of different lengths and
neighbour counts, several windows per neighbour, per-copy NaN skipping, resume; number formats; no per-copy
vmap fallback (a "batching rule" warning) in any supported model family."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import make_tiny_family

from tttnn import jsonl
from tttnn.core.batched import ATTENTION_CHOICES, BatchedTTTRunner
from tttnn.core.metrics import rolling_windows
from tttnn.core.precision import Precision, setup_precision
from tttnn.core.ttt import Document, Neighbor, TTTConfig, TTTRunner, run_task
from tttnn.models.load import load_model

DOC = "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n" * 3
OTHER = "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED. " * 4
MATH = "What is 12 + 30? Answer: 42. Solve 3*x + 2 = 11 for x. Answer: 3. " * 3


def _docs() -> list[Document]:
    """Four documents of different lengths with 3, 1, 2 and 0 neighbours of ragged lengths."""
    return [
        Document("d0", DOC, [Neighbor("n0", DOC, 0.1), Neighbor("n1", OTHER, 0.5), Neighbor("n3", MATH[:40], 0.6)]),
        Document("d1", OTHER, [Neighbor("n1", OTHER[:70], 0.1)], {"task": "t"}),
        Document("d2", DOC[:120], [Neighbor("n2", DOC[:90], 0.2), Neighbor("n3", MATH, 0.3)]),
        Document("d3", MATH[:60], []),
    ]


def _cfg(**kw) -> TTTConfig:
    base = dict(lr=1e-3, k=3, max_length=32, seed=3)
    base.update(kw)
    return TTTConfig(**base)


@pytest.fixture()
def model_no_dropout(tiny_model):
    """The tiny GPT-2 with dropout off: train mode is then deterministic, so B > 1 must equal B = 1."""
    model, tok = tiny_model
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model, tok


def _assert_same_records(a: list[dict], b: list[dict], rel: float = 1e-5) -> None:
    """Same fields and values (floats to ``rel``); ``seconds`` has the same shape."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for key in x:
            if key == "seconds":
                assert sorted(x[key]) == sorted(y[key])
                assert [len(x[key][k]) for k in sorted(x[key]) if k != "reset"] == [
                    len(y[key][k]) for k in sorted(y[key]) if k != "reset"
                ]
            elif key in ("loglik", "train_loss", "grad_norm"):
                flat = (lambda v: [u for r in v for u in r]) if key != "loglik" else (lambda v: v)
                fx, fy = flat(x[key]), flat(y[key])
                assert [u is None for u in fx] == [u is None for u in fy], key
                assert [u for u in fx if u is not None] == pytest.approx([u for u in fy if u is not None], rel=rel)
            else:
                assert x[key] == y[key], key


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(max_windows_per_neighbor=1, eval_at=[1, 3], grad_clip=None), dict(max_length=16, k=2)],
)
def test_batched_equals_batch_one(model_no_dropout, kw):
    model, tok = model_no_dropout
    cfg = _cfg(**kw)
    single, batched = TTTRunner(model, tok, cfg), BatchedTTTRunner(model, tok, cfg, 3)
    ref = single.run_batch(_docs())
    got = batched.run_batch(_docs())  # 4 documents: one group of 3, then one of 1
    _assert_same_records(ref, got)
    # the test really trains: several windows per neighbour, clipping active, and learning changes the loglik
    assert ref[0]["loglik"][1] != pytest.approx(ref[0]["loglik"][0], rel=1e-3)
    assert ref[3]["checkpoints"] == [0]  # no neighbours: nothing past n = 0 is recorded
    if "max_windows_per_neighbor" not in kw:
        assert len(ref[0]["train_loss"][0]) > 1
    if kw.get("grad_clip", 1.0) is not None:
        assert max(g for r in ref[0]["grad_norm"] for g in r) > 1.0


def test_documents_out_of_neighbours_stop_at_their_last_one(model_no_dropout):
    model, tok = model_no_dropout
    recs = BatchedTTTRunner(model, tok, _cfg(), 4).run_batch(_docs())
    d1 = recs[1]
    assert d1["checkpoints"] == [0, 1] and d1["n_neighbors"] == 1 and len(d1["seconds"]["train"]) == 1
    # with pad_checkpoints the last value is repeated up to k, as the authors' files did
    padded = BatchedTTTRunner(model, tok, _cfg(pad_checkpoints=True), 4).run_batch(_docs())[1]
    assert padded["checkpoints"] == [0, 1, 2, 3]
    assert padded["loglik"][2] == padded["loglik"][1] == padded["loglik"][3] == pytest.approx(d1["loglik"][1])
    assert padded["seconds"]["eval"][2:] == [0.0, 0.0]


def _snapshot(r: BatchedTTTRunner, s: int) -> list[torch.Tensor]:
    return [t[s].clone() for d in (r.weights, r.masters, r.exp_avg, r.exp_avg_sq) for t in d.values()]


def _poison(runner: BatchedTTTRunner, copy: int, calls: tuple[int, ...] = (1,)) -> None:
    """Make copy ``copy``'s training loss NaN on the given calls of the batched loss (1 = first)."""
    real, seen = runner._loss_fn, {"n": 0}

    def loss_fn(*a):
        losses = real(*a)
        seen["n"] += 1
        if seen["n"] in calls and copy < losses.shape[0]:
            bad = torch.zeros_like(losses)
            bad[copy] = math.nan
            losses = losses + bad
        return losses

    runner._loss_fn = loss_fn


def test_nan_copy_is_skipped_and_left_untouched(model_no_dropout):
    model, tok = model_no_dropout
    runner = BatchedTTTRunner(model, tok, _cfg(), 3)
    win = list(range(5, 25))
    runner.reset_copies(3)
    runner.train_copies([win, win, win])  # one good step: every copy now has moments and step 1
    before = _snapshot(runner, 1)
    _poison(runner, 1)
    loss, gnorm, ok = runner.train_copies([win, win[:12], win])
    assert ok == [True, False, True]
    assert math.isnan(loss[1]) and math.isnan(gnorm[1]) and math.isfinite(loss[0])
    assert runner.steps == [2, 1, 2]
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(runner, 1)))
    # copies 0 and 2 trained on the same window from the same state: still identical, and changed
    assert all(torch.equal(a, b) for a, b in zip(_snapshot(runner, 0), _snapshot(runner, 2)))
    assert not torch.equal(runner.masters[runner.param_names[0]][0], before[len(runner.param_names)])
    # next step: copy 1 takes its step 2 with a bias correction of its own, copies 0/2 their step 3
    runner.train_copies([win, win, win])
    assert runner.steps == [3, 2, 3]


def test_nan_skip_matches_batch_one(model_no_dropout, monkeypatch):
    model, tok = model_no_dropout
    cfg = _cfg(k=2)
    single, batched = TTTRunner(model, tok, cfg), BatchedTTTRunner(model, tok, cfg, 3)
    docs = _docs()[:3]
    real_forward, calls = model.forward, {"n": 0}

    def forward(*a, **kw):  # batch 1: NaN on d1's first training step (d0 takes 2 neighbours' windows first)
        out = real_forward(*a, **kw)
        if kw.get("labels") is not None:
            calls["n"] += 1
            if calls["n"] == n_d0_steps + 1:
                out.loss = torch.tensor(float("nan"))
        return out

    n_d0_steps = sum(len(single.train_windows(n.text)) for n in docs[0].neighbors[:2])
    monkeypatch.setattr(model, "forward", forward)
    ref = single.run_batch(docs)
    monkeypatch.setattr(model, "forward", real_forward)
    _poison(batched, 1)  # copy 1 holds d1; its first step is the first batched call
    got = batched.run_batch(docs)
    assert ref[1]["skipped_steps"] == got[1]["skipped_steps"] == 1 and got[0]["skipped_steps"] == 0
    assert got[1]["train_loss"][0][0] is None
    _assert_same_records(ref, got)


def test_run_task_resumes_batched(model_no_dropout, tmp_path):
    model, tok = model_no_dropout
    docs = _docs()
    full = run_task(docs, tmp_path / "b1.jsonl", TTTRunner(model, tok, _cfg()), progress=False)

    class Killed(Exception):
        pass

    def kill(rec):
        if rec["doc_id"] == "d1":
            raise Killed

    out = tmp_path / "b2.jsonl"
    with pytest.raises(Killed):
        run_task(docs, out, BatchedTTTRunner(model, tok, _cfg(), 2), progress=False, batch_size=2, on_document=kill)
    assert [r["doc_id"] for r in jsonl.read_records(tmp_path / "b2.jsonl.partial")] == ["d0", "d1"]
    resumed = run_task(docs, out, BatchedTTTRunner(model, tok, _cfg(), 2), progress=False, batch_size=2)
    _assert_same_records(full, resumed)
    assert all(r["task"] == "t" for r in resumed if r["doc_id"] == "d1")


def test_reset_optimizer_off_is_refused(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="batch_documents"):
        BatchedTTTRunner(model, tok, _cfg(reset_optimizer=False), 2)


def test_precision_modes():
    with pytest.raises(ValueError, match="ttt.dtype"):
        Precision("float16", "cpu")
    p = setup_precision(_cfg(dtype="bfloat16-pure"), torch.device("cpu"))
    assert p.master and p.weight_dtype == torch.bfloat16
    with setup_precision(_cfg(dtype="bfloat16"), torch.device("cpu")).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with setup_precision(_cfg(), torch.device("cpu")).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("dtype", ["bfloat16", "bfloat16-pure"])
def test_bf16_close_to_float32_and_batched_matches(model_no_dropout, dtype):
    model, tok = model_no_dropout
    docs = _docs()[:3]
    ref = TTTRunner(model, tok, _cfg(k=2))
    fp32 = ref.run_batch(docs)
    ref.restore_weights()
    single = TTTRunner(model, tok, _cfg(k=2, dtype=dtype))
    if dtype == "bfloat16-pure":
        assert next(model.parameters()).dtype == torch.bfloat16
        assert single.master is not None and single.master[0].dtype == torch.float32
    batched = BatchedTTTRunner(model, tok, _cfg(k=2, dtype=dtype), 3)
    low, low_b = single.run_batch(docs), batched.run_batch(docs)
    for a, b, c in zip(fp32, low, low_b):
        assert b["loglik"] == pytest.approx(a["loglik"], rel=2e-2)
        assert b["loglik"] != pytest.approx(a["loglik"], rel=1e-7)  # bf16 really was used
        assert c["loglik"] == pytest.approx(b["loglik"], rel=2e-3)


def test_pure_bf16_lr_zero_keeps_weights(model_no_dropout):
    model, tok = model_no_dropout
    runner = TTTRunner(model, tok, _cfg(k=2, lr=0.0, weight_decay=0.0, dtype="bfloat16-pure"))
    rec = runner.run_document("d0", DOC, _docs()[0].neighbors)
    assert rec["loglik"][2] == rec["loglik"][0]


@pytest.fixture(scope="module", params=["llama", "gpt2", "gemma3", "qwen2", "qwen2-untied"])
def family_runner_model(request, tmp_path_factory, tiny_model_dir):
    """A tiny random model of each supported family (2 layers, width 64), loaded as the workflow loads it (SDPA);
    ``qwen2-untied`` has its own output layer, as Qwen2.5-Coder-1.5B does."""
    family = request.param
    base = family.removesuffix("-untied")
    path = tiny_model_dir if base == "gpt2" else make_tiny_family(base, tmp_path_factory.mktemp(f"tiny-{base}"))
    model, tok = load_model(str(path), device="cpu")
    if family.endswith("-untied"):
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    for m in model.modules():  # gpt2's dropout off: train mode is then deterministic
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return family, model, tok


@pytest.mark.parametrize("attention", ATTENTION_CHOICES)
def test_no_vmap_fallback_and_equal_to_batch_one(family_runner_model, attention):
    """A batched training step (ragged windows, one copy sitting out) and evaluation raise no "batching rule"
    warning (a per-copy loop under vmap) and give batch 1's losses, gradient norms and log-likelihoods."""
    family, model, tok = family_runner_model
    implementation = model.config._attn_implementation
    cfg = _cfg(k=1, max_length=32)
    doc = list(range(7, 80))  # 73 tokens: three rolling windows of 32
    pad = [tok.pad_token_id] * 2 if tok.pad_token_id is not None else []  # nn.Embedding(padding_idx): no gradient
    wins = [list(range(5, 28)) + pad + [9, 9], list(range(40, 57)), None]  # repeated tokens: gradients add up
    batched = BatchedTTTRunner(model, tok, cfg, 3, attention=attention)
    batched.reset_copies(3)
    evals = [list(rolling_windows(doc, batched.prefix, cfg.max_length))] * 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, gnorm, applied = batched.train_copies(wins)
        lls = batched.evaluate_copies(evals)
    fallbacks = {str(w.message)[:160] for w in caught if "batching rule" in str(w.message)}
    assert not fallbacks, f"{family}, {attention}: per-copy vmap fallback in the batched step: {fallbacks}"
    assert model.config._attn_implementation == implementation  # the model's own attention is back
    assert applied == [True, True, False]
    single = TTTRunner(model, tok, cfg)
    for s, w in enumerate(wins):
        single.reset()
        if w is not None:
            lo, gn, ok = single.train_step(w)
            assert ok and [lo, gn] == pytest.approx([loss[s], gnorm[s]], rel=1e-5), (family, s)
        assert single.evaluate(doc) == pytest.approx(lls[s], rel=1e-5), (family, s)
    single.restore_weights()
