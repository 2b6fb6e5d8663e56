"""CPU slots: jobs beyond the machine's cores wait for a free slot instead of oversubscribing."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from tttnn.logs import available_cpus, cpu_slot


def _hold(lock_dir, threads, hold, q):
    with cpu_slot(threads, lock_dir):
        start = time.monotonic()
        time.sleep(hold)
        q.put((start, time.monotonic()))


def test_jobs_beyond_the_cores_run_one_after_another(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    threads = available_cpus()  # one slot on any machine
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hold, args=(str(tmp_path), threads, 0.4, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
    spans = sorted(q.get(timeout=5) for _ in procs)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end  # never two at once


def test_one_thread_jobs_run_side_by_side(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    if available_cpus() < 2:
        pytest.skip("needs 2 CPUs")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    n = available_cpus() + 1  # one more than there are 1-CPU slots
    procs = [ctx.Process(target=_hold, args=(str(tmp_path), 1, 0.6, q)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
    spans = sorted(q.get(timeout=5) for _ in procs)
    running = [sum(s <= t < e for s, e in spans) for t, _ in spans]
    assert max(running) == available_cpus()  # every slot used at once, never more
