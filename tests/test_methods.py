"""Baselines and ablations: in-context retrieval, kNN-LM interpolation, dynamic evaluation, neighbour order."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tttnn.core.metrics import document_loglik, rolling_windows, windows_loglik, windows_token_logprobs
from tttnn.core.resume import Document
from tttnn.core.ttt import Neighbor, TTTConfig, TTTRunner
from tttnn.data.chunk import split_query
from tttnn.methods.dynamic_eval import DynamicEvalRunner, DynamicEvalSettings, split_tokens
from tttnn.methods.incontext import InContextRunner, InContextSettings, build_context
from tttnn.methods.interpolation import (
    DEFAULT_ALPHAS,
    InterpolationRunner,
    InterpolationSettings,
    knn_distribution,
    mixture_loglik,
)
from tttnn.methods.order import OrderRunner, OrderSettings, batch_loss
from tttnn.models.load import prefix_token_id, tokenize
from tttnn.report.stats import choose_alpha, oracle_alpha, with_alpha

DOC = "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n" * 3
OTHER = "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED. " * 4
MATH = "What is 12 + 30? Answer: 42. Solve 3*x + 2 = 11 for x. Answer: 3. " * 2


def _cfg(**kw) -> TTTConfig:
    base = dict(lr=1e-3, k=3, max_length=32, seed=3, eval_batch_size=3)
    base.update(kw)
    return TTTConfig(**base)


def _neighbors() -> list[Neighbor]:
    return [Neighbor("n0", OTHER, 0.1), Neighbor("n1", MATH, 0.5), Neighbor("n2", DOC[:150], 0.9)]


# ---------------------------------------------------------------- metrics.windows_token_logprobs


def test_token_logprobs_sum_to_the_rolling_loglik(tiny_model):
    model, tok = tiny_model
    model.eval()
    tokens = tokenize(tok, DOC)
    windows = list(rolling_windows(tokens, prefix_token_id(tok), 20))
    per = windows_token_logprobs(model, windows, batch_size=2)
    assert [len(t) for t in per] == [len(w.targets) for w in windows]
    assert sum(float(t.sum().double()) for t in per) == pytest.approx(windows_loglik(model, windows, 2), rel=1e-12)
    # one token by hand: the last window's last target
    w = windows[-1]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([w.input_ids])).logits[0, -1]
    assert float(per[-1][-1]) == pytest.approx(float(F.log_softmax(logits, -1)[w.targets[-1]]), abs=1e-5)


# ---------------------------------------------------------------- in-context


def test_build_context_nearest_adjacent_beginnings_kept_far_dropped():
    near, mid, far = [1, 2, 3, 4], [5, 6, 7], [8, 9]
    block, n = build_context([near, mid, far], budget=8, sep=0)
    assert block == [5, 6, 0, 1, 2, 3, 4, 0] and n == 2  # mid cut to its beginning, far dropped
    block, n = build_context([near, [], far], budget=100, sep=None)
    assert block == [8, 9, 1, 2, 3, 4] and n == 2
    assert build_context([near], budget=1, sep=0) == ([], 0)


def test_incontext_without_neighbours_is_the_plain_metric(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=40)
    runner = InContextRunner(model, tok, cfg, InContextSettings(budget=60))
    rec = runner.run_batch([Document("d", DOC, [])])[0]
    model.eval()
    plain = document_loglik(model, tokenize(tok, DOC), prefix_token_id(tok), 40, 3)
    assert rec["checkpoints"] == [0, 3]
    assert rec["loglik"] == [plain, plain]
    assert rec["n_context_neighbors"] == 0 and set(rec["context_tokens"]) == {0}


def test_incontext_scores_document_tokens_after_the_block(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=40, k=2)
    runner = InContextRunner(model, tok, cfg, InContextSettings(budget=50))
    nbrs = _neighbors()
    rec = runner.run_document("d", DOC, nbrs)
    prefix = prefix_token_id(tok)
    # by hand: nearest neighbour (OTHER) fills the 50-token budget with its beginning, MATH is dropped
    block = tokenize(tok, OTHER)[:49] + [prefix]
    tokens = tokenize(tok, DOC)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i, w in enumerate(rolling_windows(tokens, prefix, 40)):
            b = block[:-1] if i == 0 else block  # window 0 starts with the prefix token already
            ids = torch.tensor([b + w.input_ids])
            logp = F.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            m = len(w.targets)
            total += float(logp[-m:].gather(1, torch.tensor(w.targets)[:, None]).sum())
    assert rec["loglik"][1] == pytest.approx(total, rel=1e-5)
    assert rec["loglik"][1] != pytest.approx(rec["loglik"][0], rel=1e-4)
    assert rec["n_context_neighbors"] == 1
    assert rec["context_tokens"][0] == 49 and set(rec["context_tokens"][1:]) == {50}
    assert rec["n_neighbors"] == 2 and rec["neighbors"] == ["n0", "n1"]


def test_incontext_max_distance_and_length_check(tiny_model):
    model, tok = tiny_model  # 128 positions
    with pytest.raises(ValueError, match="exceeds"):
        InContextRunner(model, tok, _cfg(max_length=100), InContextSettings(budget=64))
    with pytest.raises(ValueError, match="no room"):
        InContextRunner(model, tok, _cfg(max_length=128))
    assert InContextRunner(model, tok, _cfg(max_length=100)).budget == 28
    runner = InContextRunner(model, tok, _cfg(max_length=40), InContextSettings(budget=60, max_distance=0.3))
    rec = runner.run_document("d", DOC, _neighbors())
    assert rec["n_context_neighbors"] == 1 and rec["context_tokens"][1] == 60


# ---------------------------------------------------------------- interpolation


def test_knn_distribution_weights_and_normalisation():
    p = knn_distribution([[1, 1, 2], [3]], [0.0, math.log(3.0)], vocab_size=5)
    assert p is not None and float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    assert p.tolist() == pytest.approx([0.0, 0.5, 0.25, 0.25, 0.0])  # weights 3/4, 1/4
    uniform = knn_distribution([[1], [2]], [math.nan, 0.3], vocab_size=3)
    assert uniform.tolist() == pytest.approx([0.0, 0.5, 0.5])
    assert knn_distribution([[]], [0.0], vocab_size=3) is None


def test_mixture_is_a_distribution_and_matches_the_formula(tiny_model):
    model, tok = tiny_model
    vocab = model.get_output_embeddings().weight.shape[0]
    p_knn = knn_distribution([tokenize(tok, OTHER), tokenize(tok, MATH)], [0.2, 0.7], vocab)
    with torch.no_grad():
        p_lm = F.softmax(model(input_ids=torch.tensor([tokenize(tok, DOC)[:10]])).logits[0, -1].double(), -1)
    for a in DEFAULT_ALPHAS:
        assert float(((1 - a) * p_lm + a * p_knn).sum()) == pytest.approx(1.0, abs=1e-9)
    lp = torch.log(torch.tensor([0.1, 0.2]))
    pk = torch.tensor([0.5, 0.0], dtype=torch.float64)
    want = math.log(0.9 * 0.1 + 0.1 * 0.5) + math.log(0.9 * 0.2)
    assert mixture_loglik(lp, pk, 0.1) == pytest.approx(want, rel=1e-6)


def test_interpolation_alpha_zero_is_plain_and_copy_helps(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=24)
    runner = InterpolationRunner(model, tok, cfg)
    rec, none = runner.run_batch(
        [Document("d", DOC, [Neighbor("same", DOC, 0.0), Neighbor("o", OTHER, 5.0)]), Document("e", DOC, [])]
    )
    model.eval()
    plain = document_loglik(model, tokenize(tok, DOC), prefix_token_id(tok), 24, 3)
    assert rec["alphas"] == DEFAULT_ALPHAS and rec["checkpoints"] == [0]
    assert rec["loglik"][0] == pytest.approx(plain, rel=1e-12)
    assert rec["loglik_by_alpha"][0] == rec["loglik"][0]
    # the planted copy puts mass on the document's own tokens: a random LM gains a lot from any alpha > 0
    assert rec["loglik_by_alpha"][-1] > rec["loglik_by_alpha"][0] + 0.5 * rec["n_tokens"]
    assert rec["knn_coverage"] == 1.0
    assert none["loglik_by_alpha"] == [none["loglik"][0]] * len(DEFAULT_ALPHAS)
    assert choose_alpha([rec]) == 0.19 and oracle_alpha([rec, none]) == 0.19
    mixed = with_alpha(rec, 0.19)
    assert mixed["checkpoints"] == [0, 3] and mixed["loglik"] == [rec["loglik"][0], rec["loglik_by_alpha"][-1]]


def test_choose_alpha_maximises_the_summed_loglik():
    grid = [0.0, 0.05, 0.1, 0.15]
    recs = [
        {"alphas": grid, "loglik_by_alpha": [-100.0, -90.0, -95.0, -99.0]},  # alone: 0.05
        {"alphas": grid, "loglik_by_alpha": [-300.0, -290.0, -280.0, -285.0]},  # alone: 0.1
    ]
    assert choose_alpha(recs[:1]) == 0.05 and choose_alpha(recs[1:]) == 0.1
    assert choose_alpha(recs) == 0.1  # sums -400, -380, -375, -384
    assert choose_alpha([{"alphas": grid, "loglik_by_alpha": [-1.0, -1.0, -2.0, -3.0]}]) == 0.0  # tie: smallest
    with pytest.raises(ValueError):
        choose_alpha([recs[0], {"alphas": [0.0], "loglik_by_alpha": [0.0]}])
    with pytest.raises(ValueError):
        with_alpha({**recs[0], "k": 1, "loglik": [-100.0]}, 0.07)
    with pytest.raises(ValueError):
        InterpolationSettings(alphas=[0.0, 0.1], temperature=0)


# ---------------------------------------------------------------- dynamic evaluation


def test_dynamic_eval_zero_steps_is_plain_metric_on_the_rest(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=20)
    rec = DynamicEvalRunner(model, tok, cfg, DynamicEvalSettings(steps=0)).run_document("d", DOC)
    ids = tokenize(tok, DOC)  # the authors' split: the first half of the model's tokens, the rest decoded back
    rest = tok.decode(ids[len(ids) // 2 :], clean_up_tokenization_spaces=False)
    model.eval()
    assert rec["checkpoints"] == [0]
    assert rec["loglik"] == [document_loglik(model, tokenize(tok, rest), prefix_token_id(tok), 20, 3)]
    assert rec["n_bytes"] == len(rest.encode())


def test_dynamic_eval_training_on_first_part_lowers_loss_on_rest(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=20, k=6, eval_at=[3, 6])
    runner = DynamicEvalRunner(model, tok, cfg)
    rec = runner.run_batch([Document("d", DOC)])[0]
    assert rec["checkpoints"] == [0, 3, 6]
    assert rec["loglik"][2] > rec["loglik"][0] + 0.05 * rec["n_tokens"]
    assert len(rec["train_loss"]) == 6 and rec["steps"] == 6
    # more steps than the first part has windows: it cycles
    rec = DynamicEvalRunner(model, tok, cfg, DynamicEvalSettings(steps=3 * rec["train_windows"] + 1)).run_document(
        "d", DOC
    )
    assert len(rec["train_loss"]) == rec["steps"] and rec["checkpoints"] == [0, 3, 6]
    # lr 0: nothing moves, and the runner hands back the pretrained weights
    flat = DynamicEvalRunner(model, tok, _cfg(max_length=20, k=2, lr=0.0, weight_decay=0.0)).run_document("d", DOC)
    assert flat["loglik"] == pytest.approx([flat["loglik"][0]] * 3, rel=1e-6)


# ---------------------------------------------------------------- neighbour order


def _strip(rec):
    return {k: v for k, v in rec.items() if k not in ("seconds", "order")}


def test_farthest_is_run_document_on_the_reversed_list(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=24)
    nbrs = _neighbors()
    far = OrderRunner(model, tok, cfg, OrderSettings(order="farthest")).run_batch([Document("d", DOC, nbrs)])[0]
    ttt = TTTRunner(model, tok, cfg)
    assert _strip(far) == _strip(ttt.run_document("d", DOC, nbrs[::-1]))
    near = ttt.run_document("d", DOC, nbrs)
    assert far["neighbors"] == ["n2", "n1", "n0"] and far["order"] == "farthest"
    assert far["loglik"][0] == near["loglik"][0]
    assert abs(far["loglik"][1] - near["loglik"][1]) > 1e-3


def test_batch_of_one_in_order_is_the_sequential_loop(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=24)
    nbrs = _neighbors()
    ttt = TTTRunner(model, tok, cfg)
    settings = OrderSettings(order="batch", batch_size=1, shuffle=False)
    rec = OrderRunner(model, tok, cfg, settings, runner=ttt).run_document("d", DOC, nbrs)
    seq = ttt.run_document("d", DOC, nbrs)
    assert rec["checkpoints"] == seq["checkpoints"] == [0, 1, 2, 3]
    assert rec["loglik"] == pytest.approx(seq["loglik"], rel=1e-9)
    assert rec["updates"][-1] == sum(len(x) for x in seq["train_loss"])
    assert rec["train_tokens"] == sum(seq["train_tokens"])


def test_batch_minibatches_shuffled_and_checkpointed_by_neighbours(tiny_model):
    model, tok = tiny_model
    cfg = _cfg(max_length=24, k=4)
    nbrs = _neighbors()  # 3 neighbours, k = 4
    ttt = TTTRunner(model, tok, cfg)
    runner = OrderRunner(model, tok, cfg, OrderSettings(order="batch", batch_size=3), runner=ttt)
    rec = runner.run_document("d", DOC, nbrs)
    seq = ttt.run_document("d", DOC, nbrs)
    n_windows = sum(len(x) for x in seq["train_loss"])
    assert rec["train_tokens"] == sum(seq["train_tokens"]) and rec["train_windows"] == n_windows
    assert len(rec["train_loss"]) == math.ceil(n_windows / 3) and sum(rec["batch_windows"]) == n_windows
    # only measured checkpoints: it stops at its 3rd (last) neighbour, nothing padded to k = 4
    assert rec["checkpoints"][0] == 0 and rec["checkpoints"][-1] == 3
    assert rec["checkpoints"] == sorted(set(rec["checkpoints"])) and len(rec["loglik"]) == len(rec["checkpoints"])
    assert rec["loglik"][-1] != seq["loglik"][-1]
    assert _strip(runner.run_document("d", DOC, nbrs)) == _strip(rec)  # seeded by the document


def test_order_table_never_invents_a_checkpoint():
    from tttnn.report.compare import order_table

    def rec(doc, cps, ll):
        return {"doc_id": doc, "checkpoints": cps, "loglik": ll, "n_bytes": 100, "n_words": 10}

    # the batch order's first minibatch completed 3 neighbours at once: n = 1, 2 were never measured
    batch = [rec("a", [0, 3, 4], [-100.0, -80.0, -75.0]), rec("b", [0, 3, 4], [-90.0, -85.0, -84.0])]
    main = [
        rec("a", [0, 1, 2, 3, 4], [-100.0, -95, -90, -85, -80]),
        rec("b", [0, 1, 2, 3, 4], [-90.0, -89, -88, -87, -86]),
    ]
    table = order_table({("m", "order-batch", "github"): batch, ("m", "ttt", "github"): main}, B=20)
    got = table[table.order == "batch"]
    assert sorted(got.n_neighbors) == [0, 3, 4]  # no flat start drawn from the n = 0 value
    at3 = got[got.n_neighbors == 3].bits_per_byte.iloc[0]
    assert at3 == pytest.approx(165 / (200 * math.log(2)))
    nearest = table[table.order == "nearest"]
    assert sorted(nearest.n_neighbors) == [0, 3, 4]  # the method on the same documents and checkpoints


def test_padding_does_not_change_the_real_tokens_loss(tiny_model):
    model, tok = tiny_model
    model.eval()
    pad = prefix_token_id(tok)
    short, long = tokenize(tok, OTHER)[:9], tokenize(tok, DOC)[:24]
    with torch.no_grad():
        alone_s, cs = batch_loss(model, [short], pad)
        alone_l, cl = batch_loss(model, [long], pad)
        both, c = batch_loss(model, [short, long], pad)
        hf = model(input_ids=torch.tensor([short]), labels=torch.tensor([short])).loss
    assert (cs, cl, c) == (8, 23, 31)
    assert float(both) == pytest.approx((float(alone_s) * cs + float(alone_l) * cl) / c, rel=1e-5)
    assert float(alone_s) == pytest.approx(float(hf), rel=1e-5)


def test_dynamic_eval_splits_on_the_model_tokens_not_words(tiny_model):
    _, tok = tiny_model
    text = "x" * 40 + " " + " ".join(["a"] * 10)  # 11 words, but the first word alone is many tokens
    ids = tokenize(tok, text)
    first, rest = split_tokens(tok, text, 1024)
    assert first + rest == text and first == tok.decode(ids[: len(ids) // 2])
    assert first != split_query(text, "split", 1024)[0]  # the retrieval's word split cuts elsewhere
    # long documents: the first max_tokens tokens only (the authors' 1024)
    first, rest = split_tokens(tok, text, 3)
    assert first == tok.decode(ids[:3]) and first + rest == text
