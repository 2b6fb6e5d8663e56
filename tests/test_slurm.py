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
    model = make_tiny_gpt2(tmp_path / "tiny-gpt2")
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    local_dir.mkdir()
    slurm_dir.mkdir()
    snakemake("--cores", "2", "all", "--configfile", str(tiny_config(local_dir, model)))

    cfg = tiny_config(slurm_dir, model)
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
    pd.testing.assert_frame_equal(pd.read_csv(L / "tables/test/curves.csv"), pd.read_csv(S / "tables/test/curves.csv"))
