"""ttt.lr: auto: the choice rule, the scores it rests on, and the workflow (no test document read, the chosen rate
in every training record)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from conftest import make_tiny_gpt2
from test_workflow import snakemake, tiny_config

from tttnn.config import ConfigError, lr_is_auto, lr_tune_settings, ttt_config
from tttnn.data.tasks import PILE_WEIGHTS
from tttnn.core.settings import LRTuneSettings
from tttnn.methods.lr_tune import choose, chosen_lr, mark_chosen, score_table


def _table(scores: dict[float, float], k: int = 5) -> pd.DataFrame:
    rows = [["m", lr, "pile-weighted", 0, 4, 2.0] for lr in scores]
    rows += [["m", lr, "pile-weighted", k, 4, s] for lr, s in scores.items()]
    return pd.DataFrame(rows, columns=["model", "lr", "task", "n_neighbors", "n_docs", "bits_per_byte"])


def test_choice_is_the_smallest_rate_within_the_tolerance_of_the_best():
    scores = {1e-5: 1.50, 3e-5: 1.405, 1e-4: 1.40, 3e-4: 2.9}
    assert choose(_table(scores), 5, 0.0) == 1e-4  # the best
    assert choose(_table(scores), 5, 0.01) == 3e-5  # 1.405 <= 1.40 * 1.01: a near-tie goes to the smaller rate
    assert choose(_table(scores), 5, 0.1) == 1e-5
    with pytest.raises(ValueError, match="after 7 neighbours"):
        choose(_table(scores), 7, 0.01)


def _rec(task: str, lls: list[float], n_bytes: int) -> dict:
    return {"task": task, "checkpoints": [0, 2], "loglik": lls, "n_bytes": n_bytes, "n_words": 10}


def test_scores_are_ratios_of_sums_then_pile_weighted():
    recs = {
        1e-4: [_rec("github", [-100.0, -50.0], 100), _rec("github", [-300.0, -250.0], 300), _rec("freelaw", [-80.0, -60.0], 100)]
    }
    t = score_table(recs, "m").set_index(["task", "n_neighbors"])["bits_per_byte"]
    gh = 300.0 / (400 * math.log(2))  # (50 + 250) nats over 400 bytes, not the mean of per-document values
    fl = 60.0 / (100 * math.log(2))
    assert t[("github", 2)] == pytest.approx(gh)
    w = PILE_WEIGHTS
    assert t[("pile-weighted", 2)] == pytest.approx((w["github"] * gh + w["freelaw"] * fl) / (w["github"] + w["freelaw"]))
    # tasks without a Pile weight: every document's bytes pooled
    pooled = score_table({1e-4: [_rec("mine", [-10.0, -5.0], 10), _rec("other", [-30.0, -15.0], 30)]}, "m")
    row = pooled[(pooled["task"] == "all") & (pooled["n_neighbors"] == 2)]
    assert float(row["bits_per_byte"].iloc[0]) == pytest.approx(20.0 / (40 * math.log(2)))
    # a rate that diverged scores worst and is never chosen
    t = score_table({1e-4: [_rec("github", [-1.0, float("nan")], 10)], 1e-5: [_rec("github", [-1.0, -2.0], 10)]}, "m")
    assert (t[(t["lr"] == 1e-4) & (t["n_neighbors"] == 2)]["bits_per_byte"] == math.inf).all()
    assert choose(t, 2, 0.01) == 1e-5


def test_chosen_rate_is_read_back_and_a_bad_table_names_its_file(tmp_path):
    table = mark_chosen(_table({1e-5: 1.5, 1e-4: 1.4}), 1e-4)
    table.to_csv(tmp_path / "m.csv", index=False)
    assert chosen_lr(tmp_path / "m.csv") == 1e-4
    (tmp_path / "bad.csv").write_text("model,lr\nm,0.1\n")
    with pytest.raises(ValueError, match=r"bad\.csv: not a learning-rate table"):
        chosen_lr(tmp_path / "bad.csv")


def test_config_auto_grid_and_per_model_overrides():
    base = {"models": {"a": {"path": "x"}, "b": {"path": "x", "ttt": {"lr": 3e-5}}, "c": {"path": "x", "train": False}},
            "ttt": {"lr": "auto", "lr_tune": {"k": 3}}, "retrieve": {"k": 5}}
    assert lr_is_auto(base, "a") and not lr_is_auto(base, "b") and not lr_is_auto(base, "c")
    assert lr_tune_settings(base, "a") == LRTuneSettings(k=3)
    assert ttt_config(base, "a", 1e-4).lr == 1e-4 and ttt_config(base, "a", 1e-4).lr_source == "tuned"
    assert ttt_config(base, "b").lr == 3e-5 and ttt_config(base, "b").lr_source == "fixed"
    bad = {**base, "ttt": {"lr": "auto", "lr_grid": [1e-4, -1.0]}}
    with pytest.raises(ConfigError, match=r"(?s)lr_grid / lr_tune: .*finite and > 0"):
        lr_tune_settings(bad, "a")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The tiny workflow with ttt.lr: auto, run to every target once."""
    tmp = tmp_path_factory.mktemp("lr")
    model = make_tiny_gpt2(tmp / "model")
    cfg = tiny_config(tmp, model)
    data = yaml.safe_load(cfg.read_text())
    data["ttt"].update(lr="auto", lr_grid=[1.0e-5, 1.0e-3], lr_tune={"k": 2})
    data["methods"] = {"n_docs": 1, "order": {"orders": ["farthest"]}}
    cfg.write_text(yaml.safe_dump(data))
    snakemake("--cores", "2", "all", "--configfile", str(cfg))
    return tmp, cfg


def _jobs(out) -> set[str]:
    lines = (out.stdout + out.stderr).splitlines()
    return {x.split()[-1].rstrip(":") for x in lines if x.startswith(("rule ", "localrule ", "checkpoint ", "localcheckpoint "))}


def test_tuned_rate_reaches_every_training_record(tuned):
    tmp, _ = tuned
    res = tmp / "results"
    table = pd.read_csv(res / "tables/test/lr.csv")
    assert set(table["lr"]) == {1e-5, 1e-3} and (res / "figures/test/lr.png").is_file()
    chosen = chosen_lr(res / "lr/test/tiny.csv")
    # before any training every rate scores the same documents identically
    start = table[table["n_neighbors"] == 0].groupby("task")["bits_per_byte"].nunique()
    assert (start == 1).all()
    for path in [*res.glob("ttt/test/tiny/*.jsonl"), *res.glob("baselines/test/tiny/order-farthest/*.jsonl")]:
        for line in path.read_text().splitlines():
            settings = json.loads(line)["provenance"]["settings"]
            assert (settings["lr"], settings["lr_source"]) == (chosen, "tuned"), path
    for line in (res / "ttt/test/tiny-baseline/github.jsonl").read_text().splitlines():
        assert json.loads(line)["provenance"]["settings"]["lr_source"] == "fixed"  # never trains


def test_tuning_reads_no_test_document(tuned):
    tmp, cfg = tuned
    res = tmp / "results"
    before = (res / "lr/test/tiny.csv").read_bytes()
    for path in res.glob("corpus/*/test/*.parquet"):  # garbage test documents
        df = pd.read_parquet(path)
        df["text"] = ["zzzz " * 50 + str(i) for i in range(len(df))]
        df.to_parquet(path)
    # the valid queries share embed_queries with the test queries, so the search reruns; the choice may not change
    snakemake("--cores", "2", str(res / "lr/test/tiny.csv"), "--configfile", str(cfg))
    assert (res / "lr/test/tiny.csv").read_bytes() == before
    forced = snakemake("--cores", "2", str(res / "lr/test/tiny.csv"), "--forcerun", "tune_lr", "--configfile", str(cfg))
    assert (res / "lr/test/tiny.csv").read_bytes() == before  # the same choice, from the same scores
    assert "tune_lr" in _jobs(forced)


def test_results_removed_by_a_failed_job_are_rebuilt_with_their_tables(tuned):
    """After a failure Snakemake removes the failed job's outputs; the tables of an earlier run still exist, and
    Snakemake alone would call the run complete. `figures` asks for missing per-document results directly."""
    tmp, cfg = tuned
    res = tmp / "results"
    snakemake("--cores", "2", "figures", "--configfile", str(cfg))  # whatever the tests before changed
    lost = res / "ttt/test/tiny-baseline/dm-math.jsonl"
    lost.unlink()
    planned = _jobs(snakemake("-n", "figures", "--configfile", str(cfg)))
    assert {"evaluate", "summarize"} <= planned, planned
