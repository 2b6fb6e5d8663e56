"""Paired claims: the bootstrap's coverage and pairing, and the claims table on hand-written records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tttnn.data.tasks import PILE_WEIGHTS
from tttnn.report.claims import claims_from_files, interval, paired_bootstrap, paired_difference
from tttnn.report.summarize import PILE_ROW

LN2 = math.log(2)


def _synthetic(rng: np.random.Generator, n: int, delta: float, spread: float = 0.3, noise: float = 0.05):
    """Paired documents: B's bpb varies a lot between documents, A = B + delta + small noise per document;
    with bytes independent of the effect, the ratio-of-sums difference of the population is ``delta``."""
    nb = rng.integers(200, 2000, size=n).astype(float)
    bpb_b = 1.0 + spread * rng.standard_normal(n)
    bpb_a = bpb_b + delta + noise * rng.standard_normal(n)
    return -bpb_a * nb * LN2, -bpb_b * nb * LN2, nb


def test_interval_covers_a_known_difference_at_about_95_percent():
    # 200 fixed seeds, 60 documents each: the percentile interval of the paired difference covers the true
    # difference in [0.88, 0.99] of them (measured 0.95 here, 0.93 over 1,000 seeds: the percentile interval
    # falls a little short of 95% with few documents of unequal size; 0.92 with 40 documents)
    delta, hits = -0.05, 0
    for seed in range(200):
        ll_a, ll_b, nb = _synthetic(np.random.default_rng(seed), 60, delta)
        _, lo, hi = paired_difference(ll_a, ll_b, nb, B=1000, seed=seed)
        hits += lo <= delta <= hi
    coverage = hits / 200
    assert 0.88 <= coverage <= 0.99, coverage


def test_pile_weighted_interval_covers_the_weighted_difference():
    # two tasks with different true differences: the Pile-weighted interval, built from resampled task values,
    # covers the weighted true difference at about 95% ([0.88, 0.99] over 200 seeds)
    deltas = {"github": -0.10, "dm-math": 0.02}
    w = {t: PILE_WEIGHTS[t] for t in deltas}
    truth = sum(w[t] * d for t, d in deltas.items()) / sum(w.values())
    hits = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        tasks = {}
        for t, d in deltas.items():
            ll_a, ll_b, nb = _synthetic(rng, 30, d)
            tasks[t] = (np.column_stack([ll_a, ll_b]), nb)
        _, wboot = paired_bootstrap(tasks, 1000, rng)
        lo, hi = interval(wboot[:, 0] - wboot[:, 1])
        hits += lo <= truth <= hi
    assert 0.88 <= hits / 200 <= 0.99, hits / 200


def test_identical_pairs_give_a_zero_width_interval_at_zero():
    ll_a, _, nb = _synthetic(np.random.default_rng(1), 25, 0.0)
    diff, lo, hi = paired_difference(ll_a, ll_a.copy(), nb, B=500, seed=1)
    assert diff == 0.0 and lo == 0.0 and hi == 0.0


def test_resampling_keeps_pairs():
    # strongly correlated pairs (documents differ far more than the methods do): keeping each document's pair
    # together gives a much narrower interval than the same values with the pairing shuffled
    rng = np.random.default_rng(7)
    ll_a, ll_b, nb = _synthetic(rng, 40, -0.05, spread=0.5, noise=0.02)
    _, lo, hi = paired_difference(ll_a, ll_b, nb, B=1000, seed=3)
    perm = rng.permutation(len(nb))
    # shuffled pairing: A's documents matched with other documents' B (bytes go with B)
    ll_a_shuffled = ll_a[perm] / nb[perm] * nb
    _, lo_s, hi_s = paired_difference(ll_a_shuffled, ll_b, nb, B=1000, seed=3)
    assert (hi - lo) < 0.25 * (hi_s - lo_s)
    assert hi < 0  # and the paired interval separates the effect


# ---- the claims table on hand-written records ----------------------------------------------------------


def _write(path: Path, records: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({**r, "fingerprint": "x"}) + "\n" for r in records))
    return str(path)


def _rec(doc: str, nb: int, cps: list[int], bpbs: list[float], **extra) -> dict:
    """A record whose log-likelihood at checkpoint cps[i] gives bpb bpbs[i] on its own."""
    return {"doc_id": doc, "n_bytes": nb, "checkpoints": cps, "loglik": [-b * nb * LN2 for b in bpbs], **extra}


MODELS = {"small": {}, "other": {}, "large": {"train": False}}


@pytest.fixture()
def run(tmp_path: Path) -> list[str]:
    """A run with two tasks: TTT (k = 4) for two trained models, a large model, in-context, interpolation,
    the farthest-first order and a half index on the first document; doc c of github has no checkpoint 4."""
    ttt, base = tmp_path / "ttt/r", tmp_path / "baselines/r/small"
    paths = [
        _write(
            ttt / "small/github.jsonl",
            [
                _rec("a", 100, [0, 2, 4], [1.0, 0.8, 0.5]),
                _rec("b", 300, [0, 2, 4], [2.0, 1.5, 1.0]),
                _rec("c", 500, [0, 2], [4.0, 0.1]),  # ran out of neighbours: no evaluation at n = 4
            ],
        ),
        _write(ttt / "small/dm-math.jsonl", [_rec("d", 200, [0, 4], [1.5, 1.2]), _rec("e", 200, [0, 4], [1.0, 0.9])]),
        _write(ttt / "other/github.jsonl", [_rec(d, n, [0, 4], [1.0, 0.9]) for d, n in (("a", 100), ("b", 300))]),
        _write(ttt / "large/github.jsonl", [_rec(d, n, [0], [b]) for d, n, b in (("a", 100, 0.6), ("b", 300, 1.2))]),
        _write(base / "incontext/github.jsonl", [_rec(d, n, [0, 4], [1, 0.9]) for d, n in (("a", 100), ("b", 300))]),
        _write(base / "order-farthest/github.jsonl", [_rec("a", 100, [0, 4], [1.0, 0.7])]),
        _write(base / "index_size-1/github.jsonl", [_rec("a", 100, [0, 4], [1.0, 0.9])]),
    ]
    interp = dict(alphas=[0.0, 0.1], k=4)
    paths.append(
        _write(
            base / "interpolation_valid/github.jsonl",
            [_rec("v", 100, [0], [1.0], loglik_by_alpha=[-100.0, -90.0], **interp)],  # alpha 0.1 is better
        )
    )
    paths.append(
        _write(
            base / "interpolation/github.jsonl",
            [
                _rec("a", 100, [0], [1.0], loglik_by_alpha=[-1.0 * 100 * LN2, -0.95 * 100 * LN2], **interp),
                _rec("b", 300, [0], [2.0], loglik_by_alpha=[-2.0 * 300 * LN2, -1.9 * 300 * LN2], **interp),
            ],
        )
    )
    return paths


def _get(table: pd.DataFrame, claim: str, task: str, model: str = "small", method_b: str | None = None) -> pd.Series:
    rows = table[(table["claim"] == claim) & (table["task"] == task) & (table["model"] == model)]
    if method_b is not None:
        rows = rows[rows["method_b"].str.startswith(method_b)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_claims_table_values_are_ratios_of_sums_of_measured_checkpoints(run):
    table = claims_from_files(run, MODELS, B=200, seed=0, n_shards=2)
    a = _get(table, "a", "github")
    # docs a and b only (c has no n = 4): ratio of sums (0.5*100 + 1.0*300)/400 against (1.0*100 + 2.0*300)/400
    assert a["n_docs"] == 2 and a["n_excluded"] == 1
    assert a["value_a"] == pytest.approx(350 / 400) and a["value_b"] == pytest.approx(700 / 400)
    assert a["diff"] == pytest.approx(-350 / 400)
    assert a["diff_ratio"] == pytest.approx(-0.5)
    assert a["lo"] <= a["diff"] <= a["hi"] < 0 and a["separated"]
    # Pile-weighted from the task values
    dm = _get(table, "a", "dm-math")
    assert dm["diff"] == pytest.approx((1.05 - 1.25))
    pile = _get(table, "a", PILE_ROW)
    w_g, w_d = PILE_WEIGHTS["github"], PILE_WEIGHTS["dm-math"]
    assert pile["diff"] == pytest.approx((w_g * a["diff"] + w_d * dm["diff"]) / (w_g + w_d))
    assert pile["n_docs"] == 4 and pile["n_excluded"] == 1


def test_claims_table_baselines_ablations_and_gap(run):
    table = claims_from_files(run, MODELS, B=200, seed=0, n_shards=2)
    assert set(table["claim"]) == {"a", "b", "c", "d", "e", "f", "g(a)", "g(f)"}
    b = _get(table, "b", "github")  # TTT-NN at 4 against in-context at 4 on a and b
    assert b["value_b"] == pytest.approx(0.9) and b["diff"] == pytest.approx(350 / 400 - 0.9)
    c = _get(table, "c", "github")  # alpha 0.1 chosen on the validation document
    assert "alpha 0.1" in c["method_b"] and c["value_b"] == pytest.approx((0.95 * 100 + 1.9 * 300) / 400)
    d = _get(table, "d", "github")  # on the ablation's document only: not an exclusion
    assert d["n_docs"] == 1 and d["n_excluded"] == 0 and d["diff"] == pytest.approx(0.5 - 0.7)
    # one document: nothing to resample, so no interval and never "separated" (a zero-width interval would be)
    assert math.isnan(d["lo"]) and math.isnan(d["hi"]) and not d["separated"]
    e = _get(table, "e", "github")
    assert e["diff"] == pytest.approx(0.5 - 0.9) and "2 shards" in e["method_a"]
    f = _get(table, "f", "github")  # (1.75 - 0.875) / (1.75 - 1.05)
    large = (0.6 * 100 + 1.2 * 300) / 400
    assert f["gap_closed"] == pytest.approx((1.75 - 0.875) / (1.75 - large))
    assert f["value_b"] == pytest.approx(large) and f["gap_lo"] <= f["gap_closed"] <= f["gap_hi"]
    g = _get(table, "g(a)", "github", model="other")
    assert g["diff"] == pytest.approx(-0.1) and g["lo"] == pytest.approx(-0.1) and g["hi"] == pytest.approx(-0.1)
    assert g["separated"]  # identical per-document gains: a zero-width interval below 0
    assert not (table["claim"].isin(["b", "c", "d", "e"]) & (table["model"] == "other")).any()


def test_only_claims_with_inputs_and_no_filled_checkpoints(tmp_path):
    # TTT only, and no document measured at the in-context k: claim (b) has rows with no documents, not values
    p = [
        _write(tmp_path / "ttt/r/small/github.jsonl", [_rec("a", 100, [0, 2, 6], [1.0, 0.9, 0.8])]),
        _write(tmp_path / "baselines/r/small/incontext/github.jsonl", [_rec("a", 100, [0, 4], [1.0, 0.95])]),
    ]
    table = claims_from_files(p, {"small": {}}, B=50, seed=0)
    assert set(table["claim"]) == {"a", "b"}
    b = _get(table, "b", "github")
    assert b["n_docs"] == 0 and b["n_excluded"] == 1 and math.isnan(b["diff"]) and not b["separated"]


def test_claims_figure_draws(run, tmp_path):
    from tttnn.report.claims_plot import claims_figure
    from tttnn.report.plots import save_figure

    table = claims_from_files(run, MODELS, B=100, seed=0, n_shards=2)
    fig = claims_figure(table)
    save_figure(fig, str(tmp_path / "c.pdf"), str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 5000
    save_figure(claims_figure(table.iloc[0:0]), str(tmp_path / "e.pdf"), str(tmp_path / "e.png"))
