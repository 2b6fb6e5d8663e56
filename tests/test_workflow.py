"""The real workflow: lint, the paper config's DAG, bad configs, and a tiny end-to-end run to figures."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from conftest import make_tiny_gpt2

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args: str, cwd: Path = REPO, check: bool = True, offline: bool = True) -> subprocess.CompletedProcess:
    flag = "1" if offline else "0"
    env = {**os.environ, "HF_HUB_OFFLINE": flag, "TRANSFORMERS_OFFLINE": flag, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}")
    return out


def tiny_config(tmp: Path, model_dir: Path, **overrides) -> Path:
    """.test/config.yaml with results in ``tmp`` and two tiny local models (one trained, one baseline)."""
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg["results_dir"] = str(tmp / "results")
    cfg["resources_dir"] = str(tmp / "resources")
    cfg["models"] = {"tiny": {"path": str(model_dir)}, "tiny-baseline": {"path": str(model_dir), "train": False}}
    for key, value in overrides.items():
        cfg[key] = value
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_lint_is_clean():
    out = snakemake("--lint")
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


def test_paper_configs_resolve_as_dags():
    # hub ids are fine when online (a dry run reads nothing from the hub); offline they fail at once
    out = snakemake("-n", "figures", "--configfile", "config/pile.yaml", "--quiet", "rules", offline=False)
    assert "search_shard" in out.stdout + out.stderr
    mini = snakemake("-n", "figures", "--configfile", "config/paper-mini.yaml", "--quiet", "rules")
    assert "evaluate" in mini.stdout + mini.stderr and "index_size" in mini.stdout + mini.stderr
    text = out.stdout + out.stderr
    assert "search_shard" in text and "ttt" in text and "prepare_model" in text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": {"m": {"path": "gpt2", "kind": "what"}}}, "kind"),
        ({"retrieve": {"k": 0}}, "k"),
        ({"corpus": {"name": "c", "source": "minipile", "tasks": ["github", "nope"]}}, "corpus.tasks"),
        (
            {
                "corpus": {
                    "name": "c",
                    "source": "pile",
                    "tasks": ["github"],
                    "pile": {"train": "/no/such/pile.jsonl", "test": "/no/such/test.jsonl"},
                }
            },
            "corpus.pile.train",
        ),
        ({"models": {"m": {"path": "/no/such/model.gguf"}}}, "models.m.path"),
        ({"models": {"m": {"path": "/tmp"}}}, "models.m.path: '/tmp' is a directory without config.json"),
        ({"index": {"name": "x", "factory": "IVF99999,PQ7"}}, "index.factory: faiss cannot build 'IVF99999,PQ7'"),
        ({"embedder": {"name": "r", "path": "no-such-org/no-such-embedder"}}, "HF_HUB_OFFLINE is set"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(tmp_path, change, message):
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "figures", "--configfile", str(path), check=False)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr


def test_nested_override_on_the_command_line_is_typed():
    out = snakemake(
        "-n", "figures", "--configfile", ".test/config.yaml", "--config", "retrieve={k: 5, drop_exact: false}"
    )
    assert "Job stats" in out.stdout + out.stderr
    bad = snakemake("-n", "figures", "--configfile", ".test/config.yaml", "--config", "retrieve={k: five}", check=False)
    assert bad.returncode != 0 and "'five' is not of type 'integer'" in bad.stdout + bad.stderr


def _declared_mem(out: subprocess.CompletedProcess, rule: str) -> set[int]:
    blocks = re.findall(rf"rule {rule}:\n(.*?)\n\n", out.stdout + out.stderr, flags=re.S)
    return {int(m) for b in blocks for m in re.findall(r"mem_mb=(\d+)", b)}


def test_memory_limit_is_local_only():
    # one machine: a job declaring more than its RAM is capped to 85% of it (and runs alone); under
    # SLURM (the profiles/default workflow profile applies there too) the job asks for what it declares
    args = [
        "-n",
        "figures",
        "--forceall",
        "--configfile",
        ".test/config.yaml",
        "--set-resources",
        "ttt:mem_mb=100000000",
    ]
    local = _declared_mem(snakemake(*args), "ttt")
    assert local == {int(0.85 * psutil.virtual_memory().total / 2**20)}
    assert _declared_mem(snakemake(*args, "--resources", "mem_mb=50000"), "ttt") == {50000}
    assert _declared_mem(snakemake(*args, "--executor", "slurm", "--jobs", "4"), "ttt") == {100000000}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One real run of the tiny config through every rule."""
    tmp = tmp_path_factory.mktemp("e2e")
    model = make_tiny_gpt2(tmp / "tiny-gpt2")
    # a compressed index whose candidates are re-ranked exactly from the on-disk embeddings
    index = {"name": "ivfpq", "factory": "IVF2,PQ8x4", "nprobe": 2, "rerank": 1000}
    cfg = tiny_config(tmp, model, index=index)
    snakemake("--cores", "2", "all", "--configfile", str(cfg))
    return tmp, cfg


@pytest.mark.slow
def test_end_to_end_outputs_are_sane(e2e):
    tmp, _ = e2e
    res = tmp / "results"
    k = 3
    for model, n_max in (("tiny", k), ("tiny-baseline", 0)):
        for task in ("github", "dm-math"):
            lines = (res / f"ttt/test/{model}/{task}.jsonl").read_text().splitlines()
            recs = [json.loads(x) for x in lines]
            test = pd.read_parquet(res / f"corpus/minipile-tiny/test/{task}.parquet")
            assert [r["doc_id"] for r in recs] == test["doc_id"].tolist()  # no document dropped
            for r in recs:
                assert r["checkpoints"] == list(range(n_max + 1))
                assert all(math.isfinite(x) and x < 0 for x in r["loglik"])
    curves = pd.read_csv(res / "tables/test/curves.csv")
    tiny = curves[(curves.model == "tiny") & (curves.task == "github")]
    assert sorted(tiny.n_neighbors) == list(range(k + 1))
    assert curves["bits_per_byte"].between(0.5, 20).all()
    summary = pd.read_csv(res / "tables/test/summary.csv")
    assert {"pile-weighted", "github", "dm-math"} <= set(summary.task)
    for name in ("bpb_by_task", "bpb_vs_neighbors", "training_cost", "model_comparison"):
        for ext in ("pdf", "png"):
            assert (res / f"figures/test/{name}.{ext}").stat().st_size > 5000
    nb = pd.read_parquet(res / "neighbors/minipile-tiny/minilm-w64s64/ivfpq/test/github.parquet")
    assert nb.groupby("query_id").size().max() == k
    assert (nb.groupby("query_id")["distance"].apply(lambda d: d.is_monotonic_increasing)).all()
    # re-ranking every candidate makes the compressed index's neighbours the exact ones
    emb = np.concatenate([np.load(res / f"embeddings/minipile-tiny/minilm-w64s64/{s}.npy") for s in ("000", "001")])
    chunks = pd.concat(
        [pd.read_parquet(res / f"chunks/minipile-tiny/minilm-w64s64/{s}.parquet") for s in ("000", "001")]
    )
    q = np.load(res / "embeddings/minipile-tiny/minilm-w64s64/queries/test/github.npy")
    test = pd.read_parquet(res / "corpus/minipile-tiny/test/github.parquet")
    for i, doc_id in enumerate(test["doc_id"]):
        d = np.sqrt(np.sort(((emb - q[i]) ** 2).sum(1))[:k])  # plain L2, the authors' unit
        got = nb[nb.query_id == doc_id].sort_values("rank")
        np.testing.assert_allclose(got["distance"].to_numpy(), d, rtol=1e-4, atol=1e-6)
        assert set(got["chunk_id"]) <= set(chunks["chunk_id"])


@pytest.mark.slow
def test_rerunning_one_task_leaves_the_others(e2e):
    tmp, cfg = e2e
    res = tmp / "results"
    target = res / "ttt/test/tiny/github.jsonl"
    other = res / "ttt/test/tiny/dm-math.jsonl"
    before_other = other.stat().st_mtime_ns
    before = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in target.read_text().splitlines()]
    out = snakemake("--cores", "2", "--force", str(target), "--configfile", str(cfg))
    assert "ttt" in out.stdout + out.stderr
    after = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in target.read_text().splitlines()]
    assert after == before  # deterministic given the seed
    assert other.stat().st_mtime_ns == before_other
    # afterwards only the tables and figures that read the rerun task are out of date
    assert planned_jobs(snakemake("-n", "all", "--configfile", str(cfg))) == {
        "summarize": 1,
        "plot": 1,
        "summarize_methods": 1,
        "plot_methods": 1,
        "claims": 1,
        "all": 1,
    }


def planned_jobs(out: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M)}


@pytest.mark.slow
def test_restricted_run_keeps_the_full_tables(e2e):
    tmp, cfg = e2e
    res = tmp / "results"
    full = (res / "tables/test/summary.csv").read_bytes()
    snakemake("--cores", "2", "figures", "--configfile", str(cfg), "--config", "tasks=[github]")
    assert (res / "tables/test/summary.csv").read_bytes() == full
    restricted = pd.read_csv(res / "tables/test+github/summary.csv")
    assert set(restricted.task) == {"github", "pile-weighted"}
    assert (res / "figures/test+github/bpb_by_task.png").exists()


@pytest.mark.slow
def test_two_embedders_coexist(e2e):
    tmp, cfg = e2e
    res = tmp / "results"
    other = yaml.safe_load(cfg.read_text())
    other["embedder"] = {**other["embedder"], "name": "minilm-short", "max_seq_length": 32}
    other["chunk"] = {**other["chunk"], "size": 32, "stride": 32}
    path = tmp / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    snakemake(
        "--cores",
        "2",
        str(res / "neighbors/minipile-tiny/minilm-short-w32s32/ivfpq/test/github.parquet"),
        "--configfile",
        str(path),
    )
    for key in ("minilm-w64s64", "minilm-short-w32s32"):
        assert (res / f"chunks/minipile-tiny/{key}/000.parquet").exists()
    # the first embedder's chunks, embeddings, index, neighbours and results are all still up to date
    planned = planned_jobs(snakemake("-n", "all", "--configfile", str(cfg)))
    assert set(planned) <= {"summarize", "plot", "summarize_methods", "plot_methods", "claims", "all"}, planned


@pytest.mark.slow
def test_every_method_runs_on_every_task(e2e):
    tmp, _ = e2e
    res = tmp / "results"
    methods = [
        "incontext",
        "interpolation",
        "interpolation_valid",
        "dynamic_eval",
        "order-farthest",
        "order-batch",
        "index_size-1",
    ]
    for task in ("github", "dm-math"):
        main = {
            json.loads(x)["doc_id"]: json.loads(x)
            for x in (res / f"ttt/test/tiny/{task}.jsonl").read_text().splitlines()
        }
        for method in methods:
            recs = [
                json.loads(x) for x in (res / f"baselines/test/tiny/{method}/{task}.jsonl").read_text().splitlines()
            ]
            n_expected = {"incontext": 2, "interpolation": 2, "interpolation_valid": 1}.get(method, 1)  # n_docs: 1
            assert len(recs) == n_expected, method
            if method == "interpolation_valid":
                assert not set(r["doc_id"] for r in recs) & set(main)  # validation documents are not test documents
                continue
            for r in recs:
                if method != "dynamic_eval":  # every record carries the plain model on the same tokens
                    assert math.isclose(r["loglik"][0], main[r["doc_id"]]["loglik"][0], rel_tol=1e-6), method
            if method == "index_size-1":
                assert recs[0]["checkpoints"] == [0, 3]
    table = pd.read_csv(res / "tables/test/methods.csv")
    tiny = table[table.model == "tiny"]
    assert {"none", "ttt-nn", "incontext", "interpolation", "interpolation-oracle", "dynamic_eval", "none-rest"} <= set(
        tiny.method
    )
    assert set(tiny.task) == {"github", "dm-math", "pile-weighted"}
    order = pd.read_csv(res / "tables/test/order.csv")
    assert set(order.order) == {"nearest", "farthest", "batch"}
    sizes = pd.read_csv(res / "tables/test/index_size.csv")
    assert sorted(sizes.n_shards.unique()) == [1, 2]
    for name in ("methods", "order", "index_size"):
        assert (res / f"figures/test/{name}.png").stat().st_size > 5000


@pytest.mark.slow
def test_performance_settings_rerun_nothing_and_lr_reruns_ttt(e2e):
    tmp, cfg = e2e
    # tests before this one may leave the tables out of date: compare with what is planned anyway
    baseline = planned_jobs(snakemake("-n", "all", "--configfile", str(cfg)))
    assert not {"ttt", "order", "incontext", "evaluate"} & set(baseline), baseline
    # eval batch, documents in lock-step, device: speed only (results equal within 1e-5)
    fast = snakemake(
        "-n",
        "all",
        "--configfile",
        str(cfg),
        "--config",
        "ttt={eval_batch_size: 2, batch_documents: 2, device: cpu}",
    )
    assert planned_jobs(fast) == baseline, fast.stdout[-3000:]
    # TF32 is not measured to leave results alone: switching it on reruns TTT
    tf32 = snakemake("-n", "all", "--configfile", str(cfg), "--config", "ttt={tf32: true}")
    assert planned_jobs(tf32).get("ttt", 0) >= 1, tf32.stdout[-3000:]
    # another method's settings rerun that method only
    other = planned_jobs(
        snakemake("-n", "all", "--configfile", str(cfg), "--config", "methods={order: {batch_size: 3}}")
    )
    assert "order" in other and not {"ttt", "incontext", "dynamic_eval", "index_size"} & set(other), other
    slow = snakemake("-n", "all", "--configfile", str(cfg), "--config", "ttt={lr: 2.0e-5}")
    assert planned_jobs(slow).get("ttt", 0) >= 1


def _records_without_times(path: Path) -> list[dict]:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "retrieve_seconds")} for r in recs]


@pytest.mark.slow
def test_blocks_equal_one_job_per_task_and_reuse_finished_documents(e2e, tmp_path):
    """cluster.block_docs = 1 (a job per document) gives the records and tables of one job per task; a new block
    size reruns the blocks, which take every finished document from the old ones (the same bytes)."""
    tmp, cfg = e2e
    whole = tmp / "results"
    blocked = yaml.safe_load(cfg.read_text())
    blocked.update(results_dir=str(tmp_path / "results"), cluster={"block_docs": 1})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(blocked))
    out = snakemake("--cores", "2", "all", "--configfile", str(path))
    jobs = out.stdout + out.stderr
    res = tmp_path / "results"
    files = sorted(p.relative_to(whole) for d in ("ttt", "baselines") for p in (whole / d).rglob("*.jsonl"))
    assert len(files) >= 2 * 2 + 2 * 7  # two models' TTT and every method of the trained one, two tasks
    for rel in files:
        assert _records_without_times(res / rel) == _records_without_times(whole / rel), rel
    # two documents per task: two blocks each, merged
    assert sorted(p.name for p in (res / "blocks/ttt/test/tiny/github").glob("*.jsonl")) == ["0.jsonl", "1.jsonl"]
    assert "merge_blocks" in jobs
    for table in ("curves", "methods", "summary"):
        a, b = pd.read_csv(whole / f"tables/test/{table}.csv"), pd.read_csv(res / f"tables/test/{table}.csv")
        pd.testing.assert_frame_equal(a.drop(columns=[c for c in a if "seconds" in c]), b.drop(columns=[c for c in b if "seconds" in c]))

    before = {rel: (res / rel).read_bytes() for rel in files}
    resized = snakemake("--cores", "2", "all", "--configfile", str(path), "--config", "cluster={block_docs: 2}")
    assert "reused" in "".join(p.read_text() for p in (res / "logs/ttt").rglob("*.log"))
    assert {rel: (res / rel).read_bytes() for rel in files} == before, resized.stdout[-2000:]
