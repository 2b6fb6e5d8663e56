"""Workflow-script plumbing: logging to the rule's log file, and CPU threads and slots."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# the last line of every job's log: its exact CPU-seconds and peak memory (Snakemake's benchmark files sample
# cpu_time every 30 s and miss up to the last 30 s; benchmarks/check_plan.py prefers this line)
COST_LINE = "tttnn job cost: cpu_s={cpu_s:.2f} max_rss_mb={rss:.0f} wall_s={wall:.1f}"
_START = time.monotonic()


def job_cost() -> dict[str, float]:
    """CPU-seconds (user + system, this process and its waited-for children), peak RSS (MiB) and wall seconds
    since this module was imported."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return {"cpu_s": cpu, "rss": max(me.ru_maxrss, kids.ru_maxrss) / 1024, "wall": time.monotonic() - _START}


def _write_cost(stream: Any) -> None:
    try:
        print(COST_LINE.format(**job_cost()), file=stream, flush=True)
    except (OSError, ValueError):  # the stream is already closed: nothing to report to
        pass


def to_file(path: str | os.PathLike | None, level: int = logging.INFO) -> None:
    """Send logging and stderr (where tqdm draws) to ``path``; keep the console when ``path`` is None."""
    if path:
        fh = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives for the process
        sys.stderr = fh
        atexit.register(_write_cost, fh)
    logging.basicConfig(
        level=level, stream=sys.stderr, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it reports every SIMD variant it tries
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which SLURM and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(n: int) -> int:
    """Use the rule's threads for torch and faiss, never more than the CPUs there are."""
    import torch

    n = max(1, min(n, available_cpus()))
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


@contextlib.contextmanager
def cpu_slot(threads: int, lock_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Hold one of ``available_cpus() // threads`` machine-wide slots while computing.

    ``snakemake --cores 8`` on a 2-core machine starts four 2-thread jobs at once, and CPU-bound torch
    jobs then thrash (3x slower in total, measured). Jobs of this workflow queue on lock files instead.
    Under SLURM the scheduler already gives each job its own CPUs, so no slot is taken there.
    """
    if os.environ.get("SLURM_JOB_ID"):
        yield
        return
    n_slots = max(1, available_cpus() // max(1, threads))
    folder = Path(lock_dir or Path(tempfile.gettempdir()) / f"tttnn-cpu-slots-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    waited, t0 = False, time.monotonic()
    while True:
        for i in range(n_slots):
            fh = open(folder / f"slot{i}.lock", "w")  # noqa: SIM115 - held until the block ends
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            if waited:
                log.info("waited %.0f s for a free CPU slot", time.monotonic() - t0)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        if not waited:
            log.info("all %d CPU slots busy: waiting", n_slots)
            waited = True
        time.sleep(0.5)


@contextlib.contextmanager
def compute_job(smk: Any) -> Iterator[None]:
    """What every compute script does first: log to the rule's log, use the rule's threads, and compute
    inside a CPU slot (``smk`` is the ``snakemake`` object Snakemake hands a script)."""
    to_file(smk.log[0])
    set_threads(smk.threads)
    with cpu_slot(smk.threads):
        yield
