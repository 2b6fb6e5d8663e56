"""Faithful to the authors' code: every optimizer step in every precision, same-token references for every
method, short documents counted (and droppable as the authors did), no task row lost from the Pile row."""

from __future__ import annotations

import math

import pytest
import torch

from tttnn.core.metrics import document_loglik
from tttnn.core.ttt import Neighbor, TTTConfig, TTTRunner
from tttnn.methods.dynamic_eval import DynamicEvalRunner, DynamicEvalSettings
from tttnn.methods.incontext import InContextRunner, InContextSettings
from tttnn.methods.order import OrderRunner, OrderSettings
from tttnn.models.load import prefix_token_id, tokenize
from tttnn.report.compare import methods_table
from tttnn.report.summarize import summarize

DOC = "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n" * 3
OTHER = "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED. " * 4
NBRS = [Neighbor("n0", OTHER, 0.1), Neighbor("n1", DOC[:120], 0.5), Neighbor("n2", OTHER[:90], 0.9)]


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().float().clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "bfloat16-pure"])
@pytest.mark.parametrize("method", ["ttt", "dynamic_eval", "order-farthest", "order-batch"])
def test_one_step_changes_the_weights_in_every_precision(tiny_model_dir, dtype, method):
    from tttnn.models.load import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    cfg = TTTConfig(lr=1e-2, k=3, max_length=24, seed=1, eval_batch_size=2, dtype=dtype)
    runner = TTTRunner(model, tok, cfg)
    runner.reset()
    before = _weights(model)
    if method == "ttt":
        runner.train_step(tokenize(tok, OTHER)[:24])
    elif method == "dynamic_eval":
        DynamicEvalRunner(model, tok, cfg, DynamicEvalSettings(steps=1), runner=runner)
        runner.train_step(runner.train_windows(DOC)[0])
    else:
        order = OrderRunner(
            model, tok, cfg, OrderSettings(order=method.removeprefix("order-"), batch_size=3), runner=runner
        )
        windows = [w for n in NBRS for w in runner.train_windows(n.text)][:3]
        _, _, ok = order._step(windows if method == "order-batch" else windows[:1])
        assert ok
    after = _weights(model)
    moved = sum(float((a - b).abs().max()) for a, b in zip(after, before))
    assert moved > 0, f"{method} under {dtype}: the weights did not change"


def test_order_batch_record_changes_under_bfloat16_pure(tiny_model_dir):
    """The whole batch-order document: in pure bf16 its bpb after training differs from n = 0."""
    from tttnn.models.load import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    cfg = TTTConfig(lr=1e-2, k=3, max_length=24, seed=1, eval_batch_size=2, dtype="bfloat16-pure")
    rec = OrderRunner(model, tok, cfg, OrderSettings(order="batch", batch_size=3)).run_document("d", DOC, NBRS)
    assert rec["skipped_steps"] == 0 and rec["loglik"][-1] != rec["loglik"][0]


def _rec(doc_id, cps, ll, n_bytes=100, **extra):
    return {"doc_id": doc_id, "checkpoints": cps, "loglik": ll, "n_bytes": n_bytes, "n_words": 10, **extra}


def test_incontext_reference_is_the_rolling_metric_at_its_own_max_length(tiny_model):
    model, tok = tiny_model
    ttt_cfg = TTTConfig(k=2, max_length=64, eval_batch_size=2)
    ic_cfg = ttt_cfg.model_copy(update={"max_length": 16})  # methods.incontext.max_length
    ic = InContextRunner(model, tok, ic_cfg, InContextSettings(budget=32)).run_document("d", DOC, NBRS)
    model.eval()
    prefix = prefix_token_id(tok)
    at16 = document_loglik(model, tokenize(tok, DOC), prefix, 16, 2)
    at64 = document_loglik(model, tokenize(tok, DOC), prefix, 64, 2)
    assert at16 != pytest.approx(at64, rel=1e-6)  # the two windowings score differently
    nb = ic["n_bytes"]
    results = {
        ("m", "ttt", "github"): [_rec("d", [0, 2], [at64, at64 + 5], nb)],
        ("m", "incontext", "github"): [ic],
    }
    table = methods_table(results, B=20, k=2)
    row = table[(table.method == "incontext") & (table.task == "github")].iloc[0]
    assert row.reference == "none-incontext"
    ref = table[(table.method == "none-incontext") & (table.task == "github")].iloc[0]
    assert ref.bits_per_byte == pytest.approx(-at16 / (nb * math.log(2)), rel=1e-9)
    assert row.reference_bpb == pytest.approx(ref.bits_per_byte)
    main = table[(table.method == "ttt-nn") & (table.task == "github")].iloc[0]
    assert main.reference == "none" and main.reference_bpb == pytest.approx(-at64 / (nb * math.log(2)))


def test_incontext_on_the_same_windows_shares_the_main_reference():
    results = {
        ("m", "ttt", "github"): [_rec("a", [0, 2], [-100.0, -80.0]), _rec("b", [0, 2], [-50.0, -45.0])],
        ("m", "incontext", "github"): [_rec("a", [0, 2], [-100.0, -95.0]), _rec("b", [0, 2], [-50.0, -49.0])],
    }
    table = methods_table(results, B=20, k=2)
    assert "none-incontext" not in set(table.method)
    row = table[(table.method == "incontext") & (table.task == "github")].iloc[0]
    assert row.reference == "none" and row.ratio == pytest.approx(144 / 150)


def _ttt_recs(task, stops):
    """Records of one task: document i evaluated at 0..stops[i] (a short one stops before k)."""
    out = []
    for i, end in enumerate(stops):
        cps = list(range(end + 1))
        out.append(
            _rec(
                f"{task}-{i}",
                cps,
                [-100.0 + 5 * n - i for n in cps],
                model="m",
                task=task,
                seconds={"train": [1.0] * end, "eval": [0.1] * len(cps), "reset": 0.0},
                train_tokens=[10] * end,
                n_tokens=50,
            )
        )
    return out


def test_short_documents_are_counted_carried_or_dropped():
    recs = _ttt_recs("github", [3, 3, 2])  # k = 3; the third document has only 2 neighbours
    summary, curves, _ = summarize(recs, bootstrap=20)
    at3 = curves[(curves.task == "github") & (curves.n_neighbors == 3)].iloc[0]
    assert at3.n_docs == 3 and at3.n_short_docs == 1 and at3.n_dropped_docs == 0
    # carried: the short document's value at 2 stands in at 3
    assert at3.bits_per_byte == pytest.approx((85 + 86 + 92) / (300 * math.log(2)))
    _, dropped, _ = summarize(recs, bootstrap=20, short="drop")
    at3 = dropped[(dropped.task == "github") & (dropped.n_neighbors == 3)].iloc[0]
    assert at3.n_docs == 2 and at3.n_dropped_docs == 1
    assert at3.bits_per_byte == pytest.approx((85 + 86) / (200 * math.log(2)))
    assert summary.n_short_docs.notna().all()


def test_a_task_whose_documents_all_stop_short_keeps_its_rows():
    # dm-math's documents all stop at k - 1: its after-k row and the Pile-weighted rows must still exist
    recs = _ttt_recs("github", [3, 3]) + _ttt_recs("dm-math", [2, 2])
    summary, curves, _ = summarize(recs, bootstrap=20)
    after = summary[summary.n_neighbors == 3]
    assert set(after.task) == {"github", "dm-math", "pile-weighted"}
    assert after[after.task == "dm-math"].n_short_docs.iloc[0] == 2


def test_a_long_neighbour_is_cut_before_tokenizing_with_the_same_windows(tiny_model, monkeypatch):
    import tttnn.core.ttt as ttt_mod

    model, tok = tiny_model
    cfg = TTTConfig(k=1, max_length=16, max_windows_per_neighbor=2)
    runner = TTTRunner(model, tok, cfg)
    text = (OTHER + DOC) * 40  # far longer than 2 windows need
    seen: list[int] = []
    real = ttt_mod.tokenize
    monkeypatch.setattr(ttt_mod, "tokenize", lambda t, s: seen.append(len(s)) or real(t, s))
    wins = runner.train_windows(text)
    full = real(tok, text)
    assert wins == [full[:16], full[16:32]]  # exactly the windows of the whole text
    assert max(seen) < len(text)  # only the beginning was tokenized
    rec = runner.run_document("d", DOC, [Neighbor("n", text, 0.1)])
    assert len(rec["seconds"]["tokenize"]) == 1 and len(rec["seconds"]["train"]) == 1
