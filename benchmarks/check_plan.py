"""Predicted against measured cost per rule, for a finished run (not a test): reads the run's Snakemake benchmark
files (results/benchmarks/<rule>/.../*.tsv: s, max_rss, cpu_time) and prints, per rule and model, the plan's
CPU-seconds and peak memory next to the measured ones; rules above 30 CPU-seconds whose CPU-seconds or peak
memory miss by more than +-30% are flagged. Where the job's log (results/logs/<same path>.log) ends with the ``tttnn job cost`` line,
its exact CPU-seconds and peak RSS replace the benchmark file's, whose cpu_time is sampled every 30 s.

    python benchmarks/check_plan.py [--configfile config/config.yaml] [--results results] [--json] [--strict]

The plan is computed from the config (with the run's corpus and chunks on disk replacing the estimates), so
run it after the workflow, on the machine it ran on. ``--strict`` exits 1 when a rule is flagged.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from tttnn.cost.plan import load_config, make_plan
from tttnn.cost.schedule import MODEL_RULES

# first folder under benchmarks/ -> rule; rules with a model name give its position in the path's parts
FOLDERS = {
    "corpus": ("build_corpus", None),
    "prepare_model": ("prepare_model", 1),
    "chunk": ("chunk", None),
    "embed": ("embed", None),
    "index": ("index", None),
    "search": ("search_shard", None),
    "ttt": ("ttt", 2),
    "tune_lr": ("tune_lr", 2),
    "evaluate": ("evaluate", 2),
    "incontext": ("incontext", 2),
    "interpolation": ("interpolation", 2),
    "interpolation_valid": ("interpolation_valid", 2),
    "dynamic_eval": ("dynamic_eval", 2),
    "order": ("order", 2),
    "index_size": ("index_size", 2),
}
RUN_RULES = set(MODEL_RULES)
MIN_CPU_S, TOLERANCE = 30.0, 0.30


def classify(rel: Path, run: str, corpus: str) -> tuple[str, str] | None:
    """(rule, model) of a benchmark file from its path under benchmarks/, or None when it is another run's."""
    parts = rel.with_suffix("").parts
    if not parts or parts[0] not in FOLDERS:
        return None
    rule, model_at = FOLDERS[parts[0]]
    if rule == "embed" and parts[-1] == "queries":
        rule = "embed_queries"
    if rule in RUN_RULES and (len(parts) < 3 or parts[1] != run):
        return None
    if rule in ("build_corpus", "chunk", "embed", "embed_queries", "index", "search_shard") and parts[1] != corpus:
        return None
    model = parts[model_at] if model_at is not None and len(parts) > model_at else ""
    return rule, model


def read_benchmark(path: Path) -> dict[str, float]:
    """Seconds, peak RSS (MiB) and CPU-seconds of one benchmark file (the mean over its repeats)."""
    df = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    out = {}
    for col in ("s", "max_rss", "cpu_time"):
        out[col] = float(pd.to_numeric(df[col], errors="coerce").mean()) if col in df else math.nan
    return out


COST = re.compile(r"tttnn job cost: cpu_s=([\d.]+) max_rss_mb=([\d.]+)")


def read_cost_line(log: Path) -> dict[str, float] | None:
    """CPU-seconds and peak RSS (MiB) from the last ``tttnn job cost`` line of a job's log (None: no such line)."""
    if not log.is_file():
        return None
    found = COST.findall(log.read_text(errors="replace"))
    if not found:
        return None
    cpu, rss = found[-1]
    return {"cpu_time": float(cpu), "max_rss": float(rss)}


def measured(results: Path, run: str, corpus: str) -> dict[tuple[str, str], dict[str, float]]:
    """Per (rule, model): jobs, CPU-seconds summed, peak RSS, the longest job's seconds, and how many jobs'
    CPU-seconds came from their logs' cost line (the rest: the benchmark files' sampled cpu_time)."""
    agg: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"jobs": 0, "cpu_s": 0.0, "max_rss": 0.0, "s": 0.0, "exact": 0}
    )
    root = results / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        key = classify(rel, run, corpus)
        if key is None:
            continue
        b = read_benchmark(path)
        exact = read_cost_line(results / "logs" / rel.with_suffix(".log"))
        if exact is not None:
            b.update(exact)
        a = agg[key]
        a["jobs"] += 1
        a["exact"] += exact is not None
        a["cpu_s"] += 0.0 if math.isnan(b["cpu_time"]) else b["cpu_time"]
        a["max_rss"] = max(a["max_rss"], 0.0 if math.isnan(b["max_rss"]) else b["max_rss"])
        a["s"] = max(a["s"], 0.0 if math.isnan(b["s"]) else b["s"])
    return dict(agg)


def compare(plan: dict[str, Any], meas: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    """One row per rule (and model) that has a benchmark directive: predicted, measured, ratio, flag."""
    rows = []
    for r in plan["rows"]:
        if r.rule not in {v[0] for v in FOLDERS.values()} | {"embed_queries"}:
            continue
        m = meas.get((r.rule, r.model))
        row: dict[str, Any] = {
            "rule": r.rule,
            "model": r.model,
            "jobs_predicted": r.jobs,
            "cpu_s_predicted": round(r.cpu_s, 1),
            "mem_mb_predicted": round(r.peak_mem_mb),
        }
        if m is None:
            row.update(jobs_measured=0, flag="not measured")
            rows.append(row)
            continue
        ratio = r.cpu_s / m["cpu_s"] if m["cpu_s"] > 0 else math.inf
        mem_ratio = r.peak_mem_mb / m["max_rss"] if m["max_rss"] > 0 else math.inf
        big = max(m["cpu_s"], r.cpu_s) > MIN_CPU_S
        checked = [("CPU", ratio)] + ([("memory", mem_ratio)] if m["max_rss"] > 0 else [])  # NA: not measured
        misses = [name for name, x in checked if abs(x - 1) > TOLERANCE]
        flag = (
            f"{' and '.join(misses)} OUTSIDE +-30%" if big and misses else ("ok" if big else f"< {MIN_CPU_S:.0f} CPU-s")
        )
        row.update(
            jobs_measured=int(m["jobs"]),
            cpu_s_measured=round(m["cpu_s"], 1),
            cpu_ratio=round(ratio, 2),
            mem_mb_measured=round(m["max_rss"]),
            mem_ratio=round(mem_ratio, 2),
            cpu_source="log" if m["exact"] == m["jobs"] else ("benchmark" if not m["exact"] else "mixed"),
            flag=flag + ("" if m["jobs"] == r.jobs else f"; {int(m['jobs'])} of {r.jobs} jobs measured"),
        )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default="config/config.yaml")
    ap.add_argument("--results", default=None, help="results folder of the run (default: the config's results_dir)")
    ap.add_argument("--calibration", default="config/calibration.yaml")
    ap.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a rule is flagged")
    ap.add_argument("--cores", type=int, default=2, help="cores the run had (the planned wall time's)")
    ap.add_argument("--wall-s", type=float, default=None, help="the run's measured wall seconds (workflow only)")
    args = ap.parse_args(argv)
    config = load_config(args.configfile, args.results)
    config.setdefault("plan", {})["cores"] = args.cores
    results = Path(config["results_dir"])
    if not (results / "benchmarks").is_dir():
        print(f"no benchmark files under {results / 'benchmarks'}: run the workflow first", file=sys.stderr)
        return 2
    plan = make_plan(config, args.calibration)
    rows = compare(plan, measured(results, config["run"], config["corpus"]["name"]))
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        cols = [
            "rule",
            "model",
            "jobs_predicted",
            "jobs_measured",
            "cpu_s_predicted",
            "cpu_s_measured",
            "cpu_ratio",
            "mem_mb_predicted",
            "mem_mb_measured",
            "mem_ratio",
            "cpu_source",
            "flag",
        ]
        table = pd.DataFrame(rows).reindex(columns=cols)
        print(table.to_string(index=False, na_rep="-"))
        print(
            f"\ncorpus: {plan['assumptions'][0]}; flagged: rules above {MIN_CPU_S:.0f} CPU-s outside "
            f"+-{TOLERANCE:.0%} of the prediction"
        )
    flagged = [r for r in rows if "OUTSIDE" in str(r.get("flag", ""))]
    print(f"{len(flagged)} of {len(rows)} rules flagged", file=sys.stderr)
    planned = plan["totals"]["wall_hours"] * 3600
    line = f"wall time on {args.cores} cores: planned {planned / 60:.1f} min"
    if args.wall_s:
        off = args.wall_s / planned - 1
        line += f", measured {args.wall_s / 60:.1f} min ({off:+.0%}){' OUTSIDE +-30%' if abs(off) > TOLERANCE else ''}"
    print(line, file=sys.stderr)
    return 1 if (args.strict and flagged) else 0


if __name__ == "__main__":
    sys.exit(main())
