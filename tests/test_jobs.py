"""Jobs sized and placed: per-rule resources from the config, and the methods as one job per (model, task)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_tiny_gpt2
from test_workflow import REPO, snakemake, tiny_config

from tttnn.config import ConfigError
from tttnn.jobs import check_job_resources, job_resource, methods_per_task, model_resource

PILE_TASKS = 17
METHOD_JOBS = {"incontext": 1, "interpolation": 1, "interpolation_valid": 1, "dynamic_eval": 1, "order": 2}


def _job_counts(text: str) -> Counter:
    table = text[text.rindex("Job stats:") :]
    return Counter({m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)})


def _resources(text: str, rule: str) -> list[dict[str, str]]:
    """The resources of each dry-run job of a rule, as printed by snakemake -n."""
    blocks = re.findall(rf"^rule {rule}:\n(.*?)\n\n", text, flags=re.S | re.M)
    found = [re.search(r"resources: (.*)", b) for b in blocks]
    return [dict(kv.split("=", 1) for kv in m.group(1).split(", ")) for m in found if m]


def _one(text: str, rule: str, key: str) -> set[str]:
    return {r.get(key, "absent") for r in _resources(text, rule)}


def test_defaults_and_overrides_follow_the_config():
    cfg = {
        "models": {"small": {"path": "gpt2"}, "big": {"path": "gpt2-large", "mem_mb": 9000, "runtime": 600}},
        "ttt": {"mem_mb": 4000, "runtime": 120, "gpus": 1},
        "job_resources": {"incontext": {"runtime": 30}},
    }
    assert model_resource(cfg, "ttt", "mem_mb", "small") == 4000
    assert model_resource(cfg, "ttt", "mem_mb", "big") == 9000
    assert model_resource(cfg, "ttt", "runtime", "big") == 600
    assert model_resource(cfg, "incontext", "runtime", "big") == 30  # the rule's own setting wins
    assert model_resource(cfg, "incontext", "gpus", "big") == 1
    assert job_resource(cfg, "index", "runtime", 60) == 60
    assert not methods_per_task(cfg) and methods_per_task({"methods": {"jobs": "per_task"}})
    with pytest.raises(ConfigError, match="job_resources.search: not a rule"):
        check_job_resources({"job_resources": {"search": {"runtime": 5}}})


def test_pile_runs_each_method_as_one_job_per_model_and_task():
    # without its time limit (cluster.max_runtime cuts the tasks into blocks: tests/test_blocks.py)
    out = snakemake(
        "-n", "figures", "--configfile", "config/pile.yaml", "--quiet", "rules", "--config", "cluster={max_runtime: null}",
        offline=False,
    )
    counts = _job_counts(out.stdout + out.stderr)
    models = 1  # methods.models: [gpt2-large]
    for rule, per_task in METHOD_JOBS.items():
        assert counts[rule] == models * per_task * PILE_TASKS, (rule, counts)
    assert counts["index_size"] == models * 4 * PILE_TASKS  # four index fractions
    assert counts["ttt"] == 3 * PILE_TASKS


def test_pile_jobs_ask_for_their_own_resources():
    # as submitted to SLURM (no local memory cap): GPU jobs for TTT, methods and embedding; index on CPU
    out = snakemake("-n", "figures", "--configfile", "config/pile.yaml", "--executor", "slurm", "--jobs", "4", offline=False)
    text = out.stdout + out.stderr
    assert _one(text, "embed", "gpu") == {"1"} and _one(text, "embed", "runtime") == {"1440"}
    assert _one(text, "embed_queries", "gpu") == {"1"} and _one(text, "embed_queries", "mem_mb") == {"12000"}
    assert _one(text, "embed_queries", "runtime") == {"60"}
    assert _one(text, "index", "gpu") == {"0"} and _one(text, "index", "runtime") == {"120"}
    assert _one(text, "chunk", "gpu") == {"0"} and _one(text, "chunk", "runtime") == {"120"}
    for rule in ("incontext", "interpolation", "interpolation_valid", "dynamic_eval", "order", "index_size"):
        assert _one(text, rule, "gpu") == {"1"}, rule
        assert _one(text, rule, "mem_mb") == {"16000"}, rule
    # cluster.max_runtime: 1440: every TTT block asks for the limit it was sized against, and no job for more
    assert _one(text, "ttt", "runtime") == {"1440"}
    for rule in ("build_corpus", "prepare_model", "chunk", "embed", "index", "search_shard", "retrieve", "ttt", *METHOD_JOBS):
        assert all(int(r["runtime"]) <= 1440 for r in _resources(text, rule)), rule
    # no job groups in the cluster profile: each rule's job is submitted with its own resources
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert "groups" not in profile and "group-components" not in profile


def test_job_resources_override_and_refuse_unknown_rules(tmp_path):
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg["job_resources"] = {"index": {"runtime": 7, "mem_mb": 777}, "ttt": {"gpus": 2}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    text = "".join(snakemake("-n", "figures", "--forceall", "--configfile", str(path)).stdout)
    assert _one(text, "index", "runtime") == {"7"} and _one(text, "index", "mem_mb") == {"777"}
    assert _one(text, "ttt", "gpu") == {"2"}
    cfg["job_resources"] = {"search": {"runtime": 5}}
    path.write_text(yaml.safe_dump(cfg))
    bad = snakemake("-n", "figures", "--configfile", str(path), check=False)
    assert bad.returncode != 0 and "job_resources.search: not a rule" in bad.stdout + bad.stderr
    cfg["job_resources"] = {"index": {"walltime": 5}}
    path.write_text(yaml.safe_dump(cfg))
    bad = snakemake("-n", "figures", "--configfile", str(path), check=False)
    assert bad.returncode != 0 and "walltime" in bad.stdout + bad.stderr


def _records(path: Path) -> list[dict]:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in recs]


@pytest.mark.slow
def test_per_task_methods_equal_per_model_methods(tmp_path):
    model = make_tiny_gpt2(tmp_path / "tiny-gpt2")
    per_model = tiny_config(tmp_path, model)
    cfg = yaml.safe_load(per_model.read_text())
    cfg["methods"]["jobs"] = "per_task"
    per_task = tmp_path / "per_task.yaml"
    per_task.write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    tables = ["methods", "order", "index_size", "index_distances"]
    targets = [str(results / f"tables/test/{t}.csv") for t in tables]

    snakemake("--cores", "2", *targets, "--configfile", str(per_model))
    before = {p.relative_to(results): _records(p) for p in (results / "baselines").rglob("*.jsonl")}
    assert len(before) == 2 * 7  # two tasks x seven method folders
    old_tables = {t: pd.read_csv(results / f"tables/test/{t}.csv") for t in tables}
    shutil.rmtree(results / "baselines")

    dry = snakemake("-n", *targets, "--configfile", str(per_task), "--quiet", "rules")
    counts = _job_counts(dry.stdout + dry.stderr)
    assert counts["incontext"] == 2 and counts["order"] == 4 and "ttt" not in counts  # per task; TTT kept
    snakemake("--cores", "2", *targets, "--configfile", str(per_task))
    after = {p.relative_to(results): _records(p) for p in (results / "baselines").rglob("*.jsonl")}
    assert after == before
    assert (results / "logs/incontext/test/tiny/github.log").exists()
    assert (results / "benchmarks/order/test/tiny/farthest/dm-math.tsv").exists()
    for t in tables:
        pd.testing.assert_frame_equal(pd.read_csv(results / f"tables/test/{t}.csv"), old_tables[t], obj=t)
