"""A plan's rows (one per rule and model), the rule graph its wall time waits on, the list-scheduled wall time,
and the number formats of its table."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tttnn.jobs import BLOCK_RULES, METHOD_RULES

# --------------------------------------------------------------------------------------------------- rules


@dataclass
class Row:
    """The plan of one rule (and model): its jobs and what they cost."""

    rule: str
    model: str = ""
    jobs: int = 0
    device: str = "cpu"
    threads: int = 1
    work: str = ""
    flops: float = 0.0
    cpu_s: float = 0.0  # CPU-seconds over all jobs (the benchmark files' cpu_time, summed)
    gpu_s: float = 0.0  # GPU-seconds over all jobs
    s_per_job: float = 0.0  # wall seconds of the longest job
    peak_mem_mb: float = 0.0  # host RAM of one job (the benchmark files' max_rss)
    gpu_mem_mb: float = 0.0
    mem_mb_asked: float = 0.0  # what the rule's resources ask for
    runtime_asked: float = 0.0  # minutes each job asks for (0: not planned)
    disk_mb: float = 0.0
    note: str = ""
    util: float = 1.0  # CPU-seconds per second of wall time per thread (see calibration cpu.utilization)
    slow: float = 1.0  # CPU jobs side by side run this much slower than measured alone (cpu.shared_slowdown)
    durations: list[float] = field(default_factory=list, repr=False)

    def add_job(self, seconds: float, cpus: float | None = None) -> None:
        """Record one job of ``seconds`` wall time (CPU-seconds: wall x threads unless given)."""
        self.jobs += 1
        if self.device == "cpu":
            seconds *= self.slow
            cpus = None if cpus is None else cpus * self.slow
        self.durations.append(seconds)
        self.s_per_job = max(self.s_per_job, seconds)
        if self.device == "cpu":
            self.cpu_s += seconds * max(self.threads, 1) * self.util if cpus is None else cpus
        else:
            self.gpu_s += seconds
            self.cpu_s += seconds if cpus is None else cpus


# bytes of one row of a map step's output (query and chunk ids, distance, shard, row, seconds) in memory
MAP_ROW_BYTES = 100

# the rules whose jobs load a model and write per-document results
MODEL_RULES = ["ttt", "tune_lr", "evaluate", *METHOD_RULES]

# rule -> rules whose jobs must all finish first (the workflow's DAG at rule level, for the wall time)
UPSTREAM: dict[str, list[str]] = {
    "fetch_hub": [],
    "build_corpus_shard": [],
    "build_corpus": [],
    "prepare_model": ["fetch_hub"],
    "chunk": ["build_corpus", "build_corpus_shard", "fetch_hub"],
    "embed": ["chunk"],
    "embed_queries": ["build_corpus", "fetch_hub"],
    "index": ["embed"],
    "search_shard": ["index", "embed_queries"],
    "retrieve": ["search_shard"],
    "retrieve_subset": ["search_shard"],
    "tune_lr": ["retrieve", "prepare_model"],
    "ttt": ["retrieve", "prepare_model", "tune_lr"],
    "evaluate": ["build_corpus", "prepare_model"],
    "incontext": ["retrieve", "prepare_model"],
    "interpolation": ["retrieve", "prepare_model"],
    "interpolation_valid": ["retrieve", "prepare_model"],
    "dynamic_eval": ["check_k", "prepare_model", "tune_lr"],
    "check_k": ["chunk"],
    "order": ["retrieve", "prepare_model", "tune_lr"],
    "index_size": ["retrieve_subset", "prepare_model", "tune_lr"],
    "lr_table": ["tune_lr"],
    "merge_blocks": list(BLOCK_RULES),
    "summarize": ["ttt", "evaluate", "merge_blocks"],
    "summarize_methods": [*MODEL_RULES, "merge_blocks"],
    "plot": ["summarize"],
    "plot_methods": ["summarize_methods"],
    "claims": [*MODEL_RULES, "merge_blocks"],
    "all": ["plot", "plot_methods", "summarize", "summarize_methods", "claims", "lr_table"],
}


def n_windows(tokens: float, max_length: int) -> int:
    return max(1, math.ceil(tokens / max_length))


def fmt_count(n: float) -> str:
    """1234567 -> '1.2M'."""
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


# --------------------------------------------------------------------------------------------- wall time


def wall_time(rows: Sequence[Row], cores: int, gpus: int, gpus_per_job: int = 1) -> float:
    """Expected wall seconds with ``cores`` CPUs and ``gpus`` GPUs: list scheduling of every job (longest
    first among the ready ones), each rule starting once all jobs of the rules it depends on are done.
    Coarser than Snakemake (no per-shard pipelining), so a slight overestimate."""
    jobs_by_rule: dict[str, list[tuple[float, int, int]]] = {}
    for r in rows:
        for d in r.durations:
            g = gpus_per_job if r.device != "cpu" else 0
            jobs_by_rule.setdefault(r.rule, []).append((d, min(max(r.threads, 0), cores), min(g, gpus)))
    left = {rule: len(j) for rule, j in jobs_by_rule.items()}
    started: set[str] = set()
    now, free_c, free_g = 0.0, cores, gpus
    ready: list[tuple[float, int, int, str]] = []
    running: list[tuple[float, int, int, str]] = []

    def release() -> None:
        for rule, jobs in jobs_by_rule.items():
            if rule in started:
                continue
            if all(left.get(u, 0) == 0 for u in UPSTREAM.get(rule, [])):
                started.add(rule)
                for d, c, g in jobs:
                    heapq.heappush(ready, (-d, c, g, rule))

    release()
    while ready or running:
        waiting = []
        while ready:
            d, c, g, rule = heapq.heappop(ready)
            if c <= free_c and g <= free_g:
                free_c, free_g = free_c - c, free_g - g
                heapq.heappush(running, (now - d, c, g, rule))
            else:
                waiting.append((d, c, g, rule))
        for w in waiting:
            heapq.heappush(ready, w)
        if not running:
            break
        end, c, g, rule = heapq.heappop(running)
        now, free_c, free_g = end, free_c + c, free_g + g
        left[rule] -= 1
        release()
    return now


def fmt_duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def fmt_mem(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"
