"""The tiny workflow through `--profile profiles/slurm` on a real one-node SLURM cluster.

Run by .ci/run as its own step (TTTNN_SLURM=1 pytest -m slurm): it starts the cluster with
scripts/slurm_cluster.sh (installs Debian's slurm-wlm and munge; needs root).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_tiny_gpt2
from test_workflow import REPO, snakemake, tiny_config

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("TTTNN_SLURM") != "1", reason="set TTTNN_SLURM=1 to start a SLURM cluster"),
]
STATE = Path(os.environ.get("SLURM_TEST_STATE", "/tmp/tttnn-slurm"))


@pytest.fixture(scope="module")
def cluster():
    up = (
        shutil.which("sinfo")
        and subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.strip() == "idle"
    )
    if not up:
        subprocess.run(["bash", str(REPO / "scripts/slurm_cluster.sh"), "start"], check=True)
    yield
    if not up:
        subprocess.run(["bash", str(REPO / "scripts/slurm_cluster.sh"), "stop"], check=False)


def _no_times(path: Path) -> list[dict]:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    # timings differ between runs; the fingerprint must not (it hashes the neighbours without them)
    return [{k: v for k, v in r.items() if k not in ("seconds", "retrieve_seconds")} for r in recs]


def _completed_jobs() -> list[str]:
    log = STATE / "jobcomp.log"
    return [ln for ln in log.read_text().splitlines() if "JobState=COMPLETED" in ln] if log.exists() else []


def test_slurm_run_equals_local_run(cluster, tmp_path):
    """A blocked run under SLURM (with a rejected job fixed and resumed) equals one local run per task."""
    model = make_tiny_gpt2(tmp_path / "tiny-gpt2")
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    local_dir.mkdir()
    slurm_dir.mkdir()
    snakemake("--cores", "2", "all", "--configfile", str(tiny_config(local_dir, model)))

    # under SLURM with cluster blocks: one job per document (two blocks per task), merged per task
    cfg = tiny_config(slurm_dir, model, cluster={"block_docs": 1})
    logdir = slurm_dir / "slurm-logs"
    common = ["--profile", "profiles/slurm", "--configfile", str(cfg), "--slurm-logdir", str(logdir)]
    before = len(_completed_jobs())

    # a job the cluster must reject: TTT asking for far more memory than the node has
    bad = snakemake(*common, "all", "--set-resources", "ttt:mem_mb=100000000", check=False)
    text = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert re.search(r"[Mm]emory specification can not be satisfied", text), text[-3000:]
    corpus = slurm_dir / "results/corpus/minipile-tiny/train/000.parquet"
    assert corpus.exists()
    corpus_mtime = corpus.stat().st_mtime_ns

    # fixed: the rerun resumes, finished jobs are not redone
    good = snakemake(*common, "all")
    out = good.stdout + good.stderr
    assert corpus.stat().st_mtime_ns == corpus_mtime
    assert "rule build_corpus" not in out
    job_ids = re.findall(r"SLURM [Jj]ob ?[Ii][Dd]:? ?(\d+)|with SLURM jobid (\d+)", out)
    assert job_ids, out[-3000:]
    assert len(_completed_jobs()) > before  # slurmctld logged them as completed jobs
    assert any(logdir.rglob("*.log"))

    L, S = local_dir / "results", slurm_dir / "results"
    for rel in ["corpus/minipile-tiny/test/github.parquet", "chunks/minipile-tiny/minilm-w64s64/001.parquet"]:
        assert pd.read_parquet(L / rel).equals(pd.read_parquet(S / rel)), rel
    for task in ("github", "dm-math"):
        a = pd.read_parquet(L / f"neighbors/minipile-tiny/minilm-w64s64/flat/test/{task}.parquet").drop(
            columns="search_seconds"
        )
        b = pd.read_parquet(S / f"neighbors/minipile-tiny/minilm-w64s64/flat/test/{task}.parquet").drop(
            columns="search_seconds"
        )
        pd.testing.assert_frame_equal(a, b)
        for model_name in ("tiny", "tiny-baseline"):
            rel = f"ttt/test/{model_name}/{task}.jsonl"
            assert _no_times(L / rel) == _no_times(S / rel), rel
            assert len(list((S / f"blocks/ttt/test/{model_name}/{task}").glob("*.jsonl"))) == 2
    for path in sorted((L / "baselines").rglob("*.jsonl")):  # every method, merged from its blocks too
        rel = path.relative_to(L)
        assert _no_times(path) == _no_times(S / rel), rel
    pd.testing.assert_frame_equal(pd.read_csv(L / "tables/test/curves.csv"), pd.read_csv(S / "tables/test/curves.csv"))


# Each rule's shell appends its SLURM job id to <rule>.attempts, so the files show how often and where it ran.
KEEP_GOING_RETRIES_SNAKEFILE = r"""
rule all:
    input: "toobig.txt", "fails.txt", "after_slow.txt", "flaky.txt"

rule toobig:  # sbatch rejects it: more memory than the node has
    output: "toobig.txt"
    resources: mem_mb=100000000
    shell: "touch {output}"

rule fails:  # runs and exits 1 on every attempt
    output: "fails.txt"
    shell: "echo $SLURM_JOB_ID >> fails.attempts; exit 1"

rule slow:
    output: "slow.txt"
    shell: "sleep 5; echo $SLURM_JOB_ID > {output}"

rule after_slow:  # independent of the failures, ready only after toobig's rejection: submitted only with keep-going
    input: "slow.txt"
    output: "after_slow.txt"
    shell: "echo $SLURM_JOB_ID > {output}"

rule flaky:  # the first attempt leaves a marker and exits 1; the second sees it and succeeds
    output: "flaky.txt"
    shell: "echo $SLURM_JOB_ID >> flaky.attempts; test -e flaky.marker || {{ touch flaky.marker; exit 1; }}; "
           "echo ok > {output}"
"""


def _job_state(job_id: str) -> str | None:
    log = STATE / "jobcomp.log"
    for ln in log.read_text().splitlines() if log.exists() else []:
        if ln.startswith(f"JobId={job_id} "):
            return re.search(r"JobState=(\S+)", ln).group(1)
    return None


def test_profile_keep_going_and_retries(cluster, tmp_path):
    """profiles/slurm's `keep-going: true` and `retries: 1` as the executor plugin applies them: a job sbatch
    rejects and a job that exits 1 do not stop independent work, and a job failing once is rerun as a new SLURM job.
    Without keep-going the run stops at toobig's rejection and after_slow is never submitted; without retries
    flaky fails for good after one attempt."""
    (tmp_path / "profile").mkdir()
    shutil.copy(REPO / "profiles/slurm/config.yaml", tmp_path / "profile/config.yaml")
    (tmp_path / "Snakefile").write_text(KEEP_GOING_RETRIES_SNAKEFILE)
    out = snakemake("--profile", "profile", "--slurm-logdir", "slurm-logs", cwd=tmp_path, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]

    # (a) keep-going: rejected at submission (twice: retries cover sbatch rejections too), the other job failed on
    # both attempts, and the independent two-job chain still finished under SLURM
    assert (tmp_path / "after_slow.txt").exists(), "independent job not run: keep-going off?\n" + text[-3000:]
    after = (tmp_path / "after_slow.txt").read_text().strip()
    assert after.isdigit() and _job_state(after) == "COMPLETED", text[-3000:]
    assert len(re.findall(r"Batch job submission failed", text)) == 2, text[-3000:]
    assert not (tmp_path / "toobig.txt").exists() and not (tmp_path / "fails.txt").exists()
    fails = (tmp_path / "fails.attempts").read_text().split()
    assert len(fails) == 2 and all(_job_state(j) == "FAILED" for j in fails), (fails, text[-3000:])

    # (b) retries: flaky ran twice as two SLURM jobs, the first failed, the second completed and wrote its output
    flaky = (tmp_path / "flaky.attempts").read_text().split()
    assert len(flaky) == 2 and flaky[0] != flaky[1], (flaky, text[-3000:])
    assert [_job_state(j) for j in flaky] == ["FAILED", "COMPLETED"]
    assert (tmp_path / "flaky.txt").read_text().strip() == "ok"
    assert re.search(r"Trying to restart job \d+", text)
    assert all((tmp_path / f"slurm-logs/rule_flaky/{j}.log").exists() for j in flaky)
