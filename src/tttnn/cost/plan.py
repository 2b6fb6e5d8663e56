"""What a run costs before it runs: jobs, work, seconds, memory and disk per rule, from the config alone.

A small explicit cost model (issue 17). FLOPs per token come from each model's architecture (its prepared
``config.json`` when there is one, else a table of the architectures the shipped configs use); seconds come
from FLOPs over a throughput per device kind and dtype read from ``config/calibration.yaml``; memory from
weights, gradients, AdamW state and activations; index RAM from the faiss factory; corpus sizes from what is
on disk, else from the config (minipile) or the Pile paper's Table 1 (the Pile). Nothing here loads model
weights or reads a corpus beyond parquet metadata and the small test files already on disk.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from tttnn.blocks import SPLIT_KEYS, blocks_enabled
from tttnn.config import (
    lr_is_auto,
    method_names,
    report_name,
)
from tttnn.cost.archs import Arch, MiB, find_arch
from tttnn.cost.corpus_size import corpus_estimate
from tttnn.cost.data_rules import DataRules
from tttnn.cost.model_rules import ModelRules
from tttnn.cost.rates import Device, cpu_calibration_path, load_calibration
from tttnn.cost.schedule import MODEL_RULES, Row, fmt_duration, fmt_mem, wall_time
from tttnn.jobs import (
    BLOCK_RULES,
    cluster_settings,
    default_runtime,
    model_resource,
    rule_runtime,
)


class Planner(DataRules, ModelRules):
    """Builds the rows of a plan for one validated config."""

    def __init__(
        self,
        config: dict[str, Any],
        cal: dict[str, Any],
        plan: dict[str, Any] | None = None,
        block_sizes: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.config, self.cal = config, cal
        self.sizes = block_sizes  # the workflow's documents per block (planned_block_sizes)
        self.plan = {"cores": 8, "gpus": 0, "gpu": "h100", **(config.get("plan") or {}), **(plan or {})}
        self.text = cal["text"]
        self.threads = int(config.get("job_threads", 1))
        self.corpus = corpus_estimate(config, cal)
        ttt = config.get("ttt", {})
        on_gpu = self.plan["gpus"] > 0 and ttt.get("device", "auto") != "cpu"
        self.model_device = Device(self.plan["gpu"] if on_gpu else "cpu", cal, self.threads)
        emb_gpu = self.plan["gpus"] > 0 and config["embedder"].get("device", "auto") != "cpu"
        self.embed_device = Device(self.plan["gpu"] if emb_gpu else "cpu", cal, self.threads)
        self.cpu = Device("cpu", cal, self.threads)
        self.notes: list[str] = []
        self.block_docs: dict[tuple[str, str], int] = {}  # (rule, model) -> documents per block (cluster blocks)
        self.merged_files = 0  # task files merged from blocks
        resources = config.get("resources_dir", "resources")
        self.archs = {m: find_arch(m, s["path"], resources) for m, s in config["models"].items()}
        self.embedder = find_arch(config["embedder"]["name"], config["embedder"]["path"])
        self.rows: list[Row] = []

    # -- helpers ---------------------------------------------------------------------------------------------
    @property
    def startup(self) -> float:
        """Start-up of a job that imports torch and transformers."""
        return self.cal["cpu"]["job_startup_s"]

    @property
    def startup_light(self) -> float:
        """Start-up of a job that loads no model (pandas, pyarrow, faiss)."""
        return self.cal["cpu"].get("job_startup_light_s", self.cal["cpu"]["job_startup_s"])

    def base_mb(self) -> float:
        """RSS of a job's Python process with torch and transformers imported."""
        return self.text["process_base_mb"]

    def base_light_mb(self) -> float:
        """RSS of a job's Python process that loads no model."""
        return self.text.get("process_base_light_mb", self.text["process_base_mb"])

    def mem_asked(self, model: str, rule: str = "ttt") -> float:
        """What a model rule's jobs ask for: job_resources.<rule>, else models.<m>.mem_mb, else ttt.mem_mb."""
        config = {**self.config, "ttt": {"mem_mb": 6000, **self.config.get("ttt", {})}}
        return model_resource(config, rule, "mem_mb", model)

    def row(self, rule: str, model: str = "", device: Device | None = None, threads: int | None = None) -> Row:
        d = device or self.cpu
        r = Row(rule, model, device=d.kind, threads=self.threads if threads is None else threads)
        r.util = self.cal["cpu"].get("utilization", 1.0)
        if int(self.plan["cores"]) > 1:  # one job per core at once: each shares caches and memory bandwidth
            r.slow = self.cal["cpu"].get("shared_slowdown", 1.0)
        self.rows.append(r)
        return r

    def runtime_asked(self, rule: str, model: str = "") -> float:
        """Minutes a rule's jobs ask the scheduler for, as the rules compute it (job_resources over defaults)."""
        c = self.config
        if model and rule in MODEL_RULES:
            return float(model_resource(c, rule, "runtime", model))
        if default_runtime(c, rule) is None:
            return 0.0
        return float(rule_runtime(c, rule))

    def tokens(self, nbytes: float) -> float:
        return nbytes / self.corpus.bytes_per_token

    def load_seconds(self, arch: Arch) -> float:
        """A model job's load: a fixed part (the model's code, the tokenizer) and its float32 weights."""
        cpu = self.cal["cpu"]
        return cpu.get("load_fixed_s", 0.0) + 4 * arch.params / cpu["load_bytes_per_s"]

    # -- the rules ---------------------------------------------------------------------------------------------
    def build(self) -> list[Row]:
        """Every rule's row, in the workflow's order, for the default target (``all``)."""
        c = self.config
        cfg_methods = c.get("methods") or {}
        self.methods = method_names(c)
        trained = [m for m, s in c["models"].items() if s.get("train", True)]
        untrained = [m for m in c["models"] if m not in trained]
        self.method_models = [m for m in trained if m in (cfg_methods.get("models") or trained)]
        all_tasks = c["corpus"]["tasks"]
        self.tasks = c.get("tasks") or all_tasks
        self.all_tasks = all_tasks
        self._corpus()
        self._prepare()
        self._chunk_embed_index()
        if (self.config.get("methods") or {}).get("dynamic_eval") is not None and self.method_models:
            self._light("check_k")
        self.tuned = [m for m in trained if lr_is_auto(c, m)]
        self._retrieve(trained)
        for m in self.tuned:
            self._tune_lr(m)
        for m in trained:
            self._ttt(m)
        for m in untrained:
            self._evaluate(m)
        for m in self.method_models:
            self._methods(m)
        self._merge_blocks()
        for rule in ["summarize"] + (["summarize_methods"] if self.methods else []):
            self._light(rule)
        for rule in ["plot"] + (["plot_methods"] if self.methods else []) + ["claims"] + (["lr_table"] if self.tuned else []):
            self._light(rule)
        self.row("all", threads=0).add_job(0.0, 0.0)
        for r in self.rows:
            r.runtime_asked = self.runtime_asked(r.rule, r.model)
            if r.peak_mem_mb > r.mem_mb_asked > 0:
                more = f"peak {fmt_mem(r.peak_mem_mb)} above the {r.mem_mb_asked:.0f} MB (mem_mb) it asks for"
                r.note = f"{r.note}; {more}" if r.note else more
            if r.s_per_job > 60 * r.runtime_asked > 0:
                more = self._over_runtime(r)
                r.note = f"{r.note}; {more}" if r.note else more
        return self.rows

    def _over_runtime(self, r: Row) -> str:
        """The note of a rule whose longest job outgrows its runtime request: what to change."""
        longest = f"longest job {fmt_duration(r.s_per_job)} over its runtime of {r.runtime_asked:.0f} min"
        limit = cluster_settings(self.config)["max_runtime"]
        if limit is not None:
            if r.rule in BLOCK_RULES:
                size = cluster_settings(self.config)["block_docs"] or self.block_docs.get((r.rule, r.model))
                return (
                    f"{longest} (cluster.max_runtime) with blocks of {size} documents: lower cluster.block_docs "
                    "(or, at 1, retrieve.k or ttt.max_length)"
                )
            return f"{longest} (cluster.max_runtime): split it with {SPLIT_KEYS.get(r.rule, 'nothing: ask for longer')}"
        return (
            f"{longest}: it resumes where it stopped (needs ~{math.ceil(r.s_per_job / 60 / r.runtime_asked)} runs), "
            "raise runtime, or set cluster.max_runtime to cut it into blocks"
        )


# ------------------------------------------------------------------------------------------------ output

COLUMNS = [
    "rule",
    "model",
    "jobs",
    "device",
    "threads",
    "work",
    "flops",
    "cpu_s",
    "gpu_s",
    "s_per_job",
    "peak_mem_mb",
    "gpu_mem_mb",
    "mem_mb_asked",
    "disk_mb",
    "note",
]


def make_plan(
    config: dict[str, Any],
    calibration: str | Path,
    plan: dict[str, Any] | None = None,
    cpu_calibration: str | Path | None = None,
) -> dict[str, Any]:
    """The plan of a validated config: rows, totals, wall time, and the assumptions it rests on; CPU rates from
    ``cpu_calibration`` (default: :func:`cpu_calibration_path`) when it exists."""
    cal = load_calibration(calibration, cpu_calibration or cpu_calibration_path(config))
    # blocks are sized as the workflow sizes them: on the device the jobs ask for, whatever machine is planned
    p = Planner(config, cal, plan, planned_block_sizes(config) or None)
    rows = p.build()
    cores, gpus = int(p.plan["cores"]), int(p.plan["gpus"])
    gpj = max(1, int(config.get("ttt", {}).get("gpus", 1) or 1))
    totals = {
        "jobs": sum(r.jobs for r in rows),
        "cpu_hours": sum(r.cpu_s for r in rows) / 3600,
        "gpu_hours": sum(r.gpu_s for r in rows) / 3600,
        "disk_gb": sum(r.disk_mb for r in rows) * MiB / 1e9,
        "max_job_mem_gb": max(r.peak_mem_mb for r in rows) * MiB / 1e9,
        "max_gpu_mem_gb": max(r.gpu_mem_mb for r in rows) * MiB / 1e9,
        # Snakemake's own work between jobs (checking files, spawning, metadata) runs one job at a time
        "wall_hours": (wall_time(rows, cores, gpus, gpj) + sum(r.jobs for r in rows) * cal["cpu"].get("snakemake_job_s", 0.0))
        / 3600,
        "cores": cores,
        "gpus": gpus,
    }
    assumptions = [
        f"corpus: {p.corpus.source}",
        f"models on {p.model_device.kind}"
        + (f", embedder on {p.embed_device.kind}" if p.embed_device.kind != p.model_device.kind else ""),
        "architectures: " + ", ".join(f"{m} ({a.params / 1e6:.0f}M params, {s})" for m, (a, s) in p.archs.items()),
        f"embedder: {p.embedder[0].name} ({p.embedder[0].params / 1e6:.0f}M params, {p.embedder[1]})",
        "every neighbour passes the distance filter; k capped by the index size only",
        f"CPU rates: {cal['cpu_source']}",
    ]
    if p.model_device.gpu or p.embed_device.gpu:
        g = p.plan["gpu"]
        assumptions.append(
            f"GPU: {g} published peak x ASSUMED efficiency {cal['gpu']['efficiency']} (by batch_documents), "
            "plus assumed per-layer launch overheads; index building stays on CPU, search on GPU with "
            "index.search_gpus"
        )
    return {"rows": rows, "totals": totals, "assumptions": assumptions, "run": report_name(config)}


def write_csv(result: dict[str, Any], path: str | Path) -> None:
    """The plan's rows, then a ``TOTAL`` row, as CSV."""
    from tttnn.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in result["rows"]:
            d = {k: v for k, v in asdict(r).items() if k in COLUMNS}
            w.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()})
        t = result["totals"]
        w.writerow(
            {
                "rule": "TOTAL",
                "jobs": t["jobs"],
                "cpu_s": round(t["cpu_hours"] * 3600, 1),
                "gpu_s": round(t["gpu_hours"] * 3600, 1),
                "s_per_job": round(t["wall_hours"] * 3600, 1),
                "peak_mem_mb": round(t["max_job_mem_gb"] * 1e9 / MiB),
                "disk_mb": round(t["disk_gb"] * 1e9 / MiB),
                "note": f"s_per_job of TOTAL = expected wall time on {t['cores']} cores, {t['gpus']} GPUs",
            }
        )


def format_table(result: dict[str, Any]) -> str:
    """A short text table: per rule (and model) jobs, work, predicted seconds, peak memory, disk; totals."""
    head = ["rule", "model", "jobs", "dev", "work", "CPU time", "GPU time", "longest job", "peak mem/job", "disk"]
    lines = []
    for r in result["rows"]:
        if r.rule == "all":
            continue
        mem = fmt_mem(r.peak_mem_mb) + (f" (+{fmt_mem(r.gpu_mem_mb)} GPU)" if r.gpu_mem_mb else "")
        lines.append(
            [
                r.rule,
                r.model,
                str(r.jobs),
                r.device,
                r.work,
                fmt_duration(r.cpu_s),
                fmt_duration(r.gpu_s) if r.gpu_s else "-",
                fmt_duration(r.s_per_job),
                mem + (" !" if r.note else ""),
                fmt_mem(r.disk_mb),
            ]
        )
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    widths[4] = min(widths[4], 60)
    fmt = "  ".join(f"{{:{'>' if i in (2, 5, 6, 7, 8, 9) else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*[x[i][: widths[i]] for i in range(len(head))]) for x in lines]
    t = result["totals"]
    out.append("")
    out.append(
        f"total: {t['jobs']} jobs, {t['cpu_hours']:.3g} CPU-hours, {t['gpu_hours']:.3g} GPU-hours, "
        f"{t['disk_gb']:.3g} GB written, largest job {t['max_job_mem_gb']:.3g} GB RAM"
        + (f" / {t['max_gpu_mem_gb']:.3g} GB GPU" if t["max_gpu_mem_gb"] else "")
    )
    out.append(f"expected wall time on {t['cores']} cores and {t['gpus']} GPUs: {fmt_duration(t['wall_hours'] * 3600)}")
    notes = [f"  ! {r.rule} {r.model}: {r.note}".rstrip() for r in result["rows"] if r.note]
    if notes:
        out.append("notes:")
        out += notes
    out.append("assumptions:")
    out += [f"  - {a}" for a in result["assumptions"]]
    return "\n".join(out)


def load_config(path: str | Path, results_dir: str | None = None) -> dict[str, Any]:
    """A config file validated against the workflow's schema, with its defaults filled in (as Snakemake does)."""
    from snakemake.utils import validate

    config = yaml.safe_load(Path(path).read_text())
    if results_dir:
        config["results_dir"] = results_dir
    schema = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"
    validate(config, str(schema))
    return config


def planned_block_sizes(config: dict[str, Any]) -> dict[tuple[str, str], int]:
    """Documents per block of each (rule, model) planned from each document's cost (``snakemake plan``'s), so
    that a block fits ``runtime_fill`` x ``max_runtime``; empty when ``cluster.block_docs`` fixes the size or
    there are no blocks. The corpus sizes on disk, when there, refine the estimate: pin ``block_docs`` to keep
    a size across restarts (a changed size reruns the blocks, which reuse every finished document)."""
    if not blocks_enabled(config) or cluster_settings(config)["block_docs"] is not None:
        return {}
    cal = load_calibration(config["plan"]["calibration"], cpu_calibration_path(config))
    # planned on the device the jobs ask for: a GPU (plan.gpu's kind) when the model jobs request one
    on_gpu = any(model_resource(config, "ttt", "gpus", m) > 0 for m in config["models"])
    plan = {"gpus": max(1, int((config.get("plan") or {}).get("gpus") or 0))} if on_gpu else {"gpus": 0}
    planner = Planner(config, cal, plan)
    planner.build()
    return dict(planner.block_docs)
