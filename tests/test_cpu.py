"""CPU slots: jobs beyond the machine's cores wait for a free slot instead of oversubscribing."""

from __future__ import annotations

import multiprocessing as mp
import time

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
