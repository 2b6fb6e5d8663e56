"""Cluster blocks: a task's documents cut into jobs and merged back, byte for byte, and the plan's block sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tttnn.blocks import (
    block_file,
    block_ranges,
    check_blocks,
    docs_per_block,
    merge_blocks,
    n_blocks,
    reuse_sources,
    rule_docs,
    task_file,
)
from tttnn.config import ConfigError
from tttnn.core import resume
from tttnn.core.resume import Document

REPO = Path(__file__).resolve().parents[1]


def test_block_ranges_cover_every_document_once():
    assert block_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert block_ranges(4, 4) == [(0, 4)]
    assert block_ranges(3, 10) == [(0, 3)]
    assert [n_blocks(n, s) for n, s in [(5, 2), (4, 4), (100, 7), (3, None)]] == [3, 1, 15, 1]


def test_docs_per_block_fits_the_limit():
    # 60 min at half: 1800 s, less 100 s of start-up, at 170 s a document: 10 documents (1800 s exactly)
    assert docs_per_block(60, 0.5, 170.0, 100.0) == 10
    assert docs_per_block(60, 0.5, 171.0, 100.0) == 9
    assert docs_per_block(60, 0.5, 171.0, 100.0, multiple=4) == 8  # whole lock-step batches
    assert docs_per_block(60, 0.5, 1e6, 100.0) == 1  # one document over the limit: still one per block


def test_block_and_task_files_are_inverse(tmp_path):
    res = str(tmp_path / "results")
    b = block_file(res, "baselines/run/m/order-batch/github", 3)
    assert b == f"{res}/blocks/baselines/run/m/order-batch/github/3.jsonl"
    assert task_file(b, res) == f"{res}/baselines/run/m/order-batch/github.jsonl"
    with pytest.raises(ValueError, match="not a block file"):
        task_file(str(tmp_path / "elsewhere/0.jsonl"), res)


def test_rule_docs_follow_each_rules_caps():
    cfg = {
        "corpus": {"n_test_docs": 10, "n_valid_docs": 3},
        "models": {"a": {"n_docs": 4}, "b": {}},
        "methods": {"n_docs": 2},
    }
    assert [rule_docs(cfg, "ttt", m) for m in "ab"] == [4, 10]
    assert rule_docs(cfg, "evaluate", "a") == 4
    assert [rule_docs(cfg, r, "b") for r in ("incontext", "interpolation", "interpolation_valid")] == [10, 10, 3]
    assert [rule_docs(cfg, r, "a") for r in ("order", "index_size", "dynamic_eval")] == [2, 2, 2]


def _process(calls: list[str]):
    def run(docs):
        calls.extend(d.doc_id for d in docs)
        return [{"value": len(d.text) * 1.5} for d in docs]

    return run


DOCS = [Document(f"d{i}", "x" * (i + 1)) for i in range(5)]
PROV = {"settings": {"lr": 1e-4}, "files": {}}


def test_blocks_merge_into_the_file_of_one_job(tmp_path):
    whole = tmp_path / "whole.jsonl"
    resume.run_task(DOCS, whole, _process([]), PROV, progress=False)
    parts = []
    for i, (a, b) in enumerate(block_ranges(len(DOCS), 2)):
        part = tmp_path / f"blocks/{i}.jsonl"
        resume.run_task(DOCS[a:b], part, _process([]), PROV, progress=False)
        parts.append(part)
    merged = tmp_path / "merged.jsonl"
    assert merge_blocks(parts, merged) == 5
    assert merged.read_bytes() == whole.read_bytes()


def test_merge_refuses_mixed_settings_and_repeated_documents(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    resume.run_task(DOCS[:2], a, _process([]), PROV, progress=False)
    resume.run_task(DOCS[2:], b, _process([]), {"settings": {"lr": 2e-4}, "files": {}}, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        merge_blocks([a, b], tmp_path / "out.jsonl")
    resume.run_task(DOCS[1:], b, _process([]), PROV, progress=False)
    with pytest.raises(ValueError, match="document d1 is in an earlier block"):
        merge_blocks([a, b], tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()  # nothing Snakemake would take as finished


def test_a_block_reuses_finished_records_in_document_order(tmp_path):
    res = tmp_path / "results"
    task = res / "ttt/run/m/github.jsonl"
    first = _process([])
    resume.run_task(DOCS, task, first, PROV, progress=False)  # one job for the task, as run before
    lines = task.read_bytes().splitlines(keepends=True)
    task.write_bytes(b"".join(lines[:2]))  # d0, d1 left in the task's file
    old_block = Path(block_file(str(res), "ttt/run/m/github", 1))  # an older block size's block: d3
    old_block.parent.mkdir(parents=True)
    old_block.write_bytes(lines[3])

    block = Path(block_file(str(res), "ttt/run/m/github", 0))
    calls: list[str] = []
    sources = reuse_sources(block, str(res))
    assert set(sources) == {task, old_block}
    resume.run_task(DOCS, block, _process(calls), PROV, progress=False, reuse=sources)
    assert calls == ["d2", "d4"]  # d0, d1, d3 reused, not recomputed
    assert block.read_bytes() == b"".join(lines)  # in document order, every line as one job wrote it
    # records of other settings are never reused
    calls.clear()
    other = {"settings": {"lr": 3e-4}, "files": {}}
    resume.run_task(DOCS, tmp_path / "other.jsonl", _process(calls), other, progress=False, reuse=[block])
    assert calls == [d.doc_id for d in DOCS]


def test_an_empty_block_publishes_an_empty_file(tmp_path):
    out = tmp_path / "empty.jsonl"
    assert resume.run_task([], out, _process([]), PROV, progress=False) == []
    assert out.read_bytes() == b""


def _config(**cluster) -> dict:
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg["cluster"] = {"max_runtime": None, "block_docs": None, "runtime_fill": 0.5, **cluster}
    cfg["models"]["smollm2-135m"].setdefault("ttt", {})
    return cfg


def test_blocks_are_refused_where_documents_are_not_independent():
    cfg = _config(block_docs=3)
    cfg["ttt"]["reset_optimizer"] = False
    with pytest.raises(ConfigError, match="reset_optimizer"):
        check_blocks(cfg)
    cfg = _config(block_docs=3)
    cfg["ttt"]["batch_documents"] = 2
    with pytest.raises(ConfigError, match="cluster.block_docs = 3 is not a multiple"):
        check_blocks(cfg)
    check_blocks(_config(block_docs=4) | {"ttt": {**cfg["ttt"]}})


def test_pile_plan_keeps_every_job_within_the_limit():
    from tttnn.cost.plan import load_config, make_plan

    cfg = load_config(REPO / "config/pile.yaml")
    limit = cfg["cluster"]["max_runtime"]
    assert limit == 1440
    assert {k: cfg["plan"][k] for k in ("cores", "gpus", "gpu")} == {"cores": 64, "gpus": 8, "gpu": "h100"}
    plan = make_plan(cfg, REPO / "config/calibration.yaml")
    rows = plan["rows"]
    for r in rows:
        assert r.runtime_asked <= limit, r.rule
        assert r.s_per_job <= 60 * limit and "over its runtime" not in r.note, (r.rule, r.model, r.note)
    ttt = {r.model: r for r in rows if r.rule == "ttt"}
    # gpt-neo's tasks (3.7 days each on one job) come in blocks of at most half the limit
    assert ttt["gpt-neo-1.3b"].jobs > 17 and ttt["gpt-neo-1.3b"].s_per_job <= 0.5 * 60 * limit + 1
    # 8 GPUs: the wall time is bounded by the GPU-hours, not by the longest task
    assert plan["totals"]["wall_hours"] < 1.1 * plan["totals"]["gpu_hours"] / 8 + 24
    # one merge per task file of a blocked rule: 3 TTT models and 1 baseline model x 17 tasks x (1 + 9 methods)
    assert sum(r.jobs for r in rows if r.rule == "merge_blocks") == 17 * (3 + 10)
