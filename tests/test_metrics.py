"""Bits per byte against independent computations, and the windowing contract."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tttnn.core.metrics import document_loglik, rolling_windows

from tttnn.report.stats import aggregate, pile_weighted
from tttnn.models.load import prefix_token_id, tokenize


def test_windows_score_every_token_once():
    toks = list(range(100, 123))  # 23 tokens
    for L in (1, 4, 5, 10, 23, 50):
        wins = list(rolling_windows(toks, prefix_token=7, max_length=L))
        scored = [t for w in wins for t in w.targets]
        assert scored == toks
        for w in wins:
            assert len(w.input_ids) <= L and len(w.targets) <= len(w.input_ids)
        # the first window is predicted from the prefix token alone
        assert wins[0].input_ids[0] == 7
        # later windows: input is the max_length tokens right before each target's position
        for w in wins[1:]:
            end = toks.index(w.targets[-1]) + 1
            assert w.input_ids == toks[end - L - 1 : end - 1]


def _reference_loglik(model, tokens, prefix, L):
    """Plain loop: predict every token from at most L previous tokens in its disjoint block."""
    total = 0.0
    with torch.no_grad():
        if len(tokens) <= L:
            ids = torch.tensor([[prefix, *tokens[:-1]]])
            logp = F.log_softmax(model(input_ids=ids).logits[0].double(), -1)
            return float(logp[torch.arange(len(tokens)), torch.tensor(tokens)].sum())
        start = 0
        while start < len(tokens):
            end = min(start + L, len(tokens))
            ctx_start = max(0, end - L - 1)
            inp = ([prefix] if start == 0 else []) + tokens[ctx_start : end - 1]
            logits = model(input_ids=torch.tensor([inp])).logits[0].double()
            logp = F.log_softmax(logits, -1)
            for pos in range(start, end):  # token `pos` is predicted at input position pos - offset
                offset = ctx_start - (1 if start == 0 else 0)
                total += float(logp[pos - 1 - offset, tokens[pos]])
            start = end
    return total


@pytest.mark.parametrize("L", [8, 16, 128])
def test_bpb_equals_reference(tiny_model, L):
    model, tok = tiny_model
    model.eval()
    text = "def add(a, b):\n    return a + b\n" * 5 + "The quick brown fox jumps over the lazy dog."
    tokens = tokenize(tok, text)
    prefix = prefix_token_id(tok)
    got = document_loglik(model, tokens, prefix, L, batch_size=3)
    want = _reference_loglik(model, tokens, prefix, L)
    assert got == pytest.approx(want, rel=1e-6)
    # batching does not change the value
    assert document_loglik(model, tokens, prefix, L, batch_size=1) == pytest.approx(got, rel=1e-6)


def test_aggregate_is_ratio_of_sums():
    ll, nb, nw = [-10.0, -1000.0], [10, 2000], [2, 300]
    m = aggregate(ll, nb, nw)
    assert m["bits_per_byte"] == pytest.approx(1010 / (2010 * math.log(2)))
    mean_of_ratios = (10 / 10 + 1000 / 2000) / 2 / math.log(2)
    assert m["bits_per_byte"] != pytest.approx(mean_of_ratios)
    assert m["byte_perplexity"] == pytest.approx(2 ** m["bits_per_byte"])
    assert m["word_perplexity"] == pytest.approx(math.exp(1010 / 302))


def test_pile_weighted_renormalises():
    assert pile_weighted({"github": 1.0, "enron": 1.0}) == pytest.approx(1.0)
    v = pile_weighted({"github": 0.5, "europarl": 1.0, "not-a-pile-task": 9.0})
    assert v == pytest.approx((7.59 * 0.5 + 0.73 * 1.0) / (7.59 + 0.73))
    with pytest.raises(ValueError):
        pile_weighted({"x": 1.0})
