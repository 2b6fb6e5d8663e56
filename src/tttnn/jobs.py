"""What each rule's jobs ask the scheduler for (mem_mb, runtime, gpus) and how the methods are cut into jobs.

Defaults come from the sections they belong to (``embedder``, ``ttt``, ``models.<m>``) or from the data
(index memory from the shard); ``job_resources.<rule>.<key>`` in the config overrides any of them, so a
cluster's sizes live in the config, validated, instead of in the rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tttnn.config import ConfigError

__all__ = [
    "BLOCK_RULES",
    "cap_runtime",
    "cluster_settings",
    "PlanError",
    "default_runtime",
    "rule_runtime",
    "index_bytes",
    "index_job_mem_mb",
    "parse_factory",
    "search_job_mem_mb",
    "JOB_RULES",
    "METHOD_RULES",
    "RESOURCE_KEYS",
    "check_job_resources",
    "job_resource",
    "methods_per_task",
    "model_resource",
]

# the rules of the methods section (workflow/rules/methods.smk): one job per (model, task) or per model
METHOD_RULES = ("incontext", "interpolation", "interpolation_valid", "dynamic_eval", "order", "index_size")
# rules whose jobs' resources `job_resources` may set
JOB_RULES = (
    "chunk",
    "embed",
    "embed_queries",
    "index",
    "search_shard",
    "retrieve",
    "retrieve_subset",
    "ttt",
    "tune_lr",
    "evaluate",
    *METHOD_RULES,
)
RESOURCE_KEYS = ("mem_mb", "runtime", "gpus")
# the per-document rules whose jobs a cluster time limit cuts into blocks (tttnn.blocks; tune_lr is not: it scores
# rates on all validation documents at once)
BLOCK_RULES = ("ttt", "evaluate", *METHOD_RULES)


def cluster_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The ``cluster`` section with its defaults (max_runtime and block_docs null: no limit, no blocks)."""
    return {"max_runtime": None, "block_docs": None, "runtime_fill": 0.5, **(config.get("cluster") or {})}


def cap_runtime(config: dict[str, Any], minutes: int) -> int:
    """A job's runtime request, never above ``cluster.max_runtime`` (a partition refuses longer requests)."""
    limit = cluster_settings(config)["max_runtime"]
    return int(minutes if limit is None else min(minutes, limit))


def job_resource(config: dict[str, Any], rule: str, key: str, default: Any) -> Any:
    """``job_resources.<rule>.<key>`` when the config sets it, else ``default`` (a number or a function of the
    job, as Snakemake's ``resources`` take them); a runtime never above ``cluster.max_runtime``."""
    value = ((config.get("job_resources") or {}).get(rule) or {}).get(key)
    value = default if value is None else value
    if key == "runtime" and isinstance(value, (int, float)):
        return cap_runtime(config, value)  # a request above the partition's limit would be refused
    return value


def default_runtime(config: dict[str, Any], rule: str) -> int | None:
    """Minutes a rule's jobs ask for unless ``job_resources`` says otherwise (None: a model rule, sized from
    ``models.<m>`` / ``ttt``); the rules and the plan both read it here."""
    pile = config["corpus"]["source"] == "pile"
    return {
        "build_corpus_shard": 240,
        "build_corpus": 240 if pile else 60,
        "prepare_model": 60,
        "chunk": 30,
        "embed": config["embedder"].get("runtime", 120),
        "embed_queries": 60,
        "index": 60,
        "search_shard": 30,
        "retrieve": 10,
        "retrieve_subset": 10,
    }.get(rule)


def rule_runtime(config: dict[str, Any], rule: str) -> int:
    """A non-model rule's runtime request: ``job_resources.<rule>.runtime``, else :func:`default_runtime`."""
    return job_resource(config, rule, "runtime", default_runtime(config, rule))


def model_resource(config: dict[str, Any], rule: str, key: str, model: str) -> int:
    """A model job's resource: ``job_resources.<rule>.<key>``, else the model's own ``models.<m>.<key>``, else the
    ``ttt`` section's (sizes follow the model: gpt-neo's TTT job needs more memory and time than gpt2's).
    Under ``cluster.max_runtime`` a block job asks for the limit its block was sized against."""
    limit = cluster_settings(config)["max_runtime"]
    if key == "runtime" and limit is not None and rule in BLOCK_RULES:
        return int(limit)
    own = config["models"][model].get(key)
    return job_resource(config, rule, key, config["ttt"][key] if own is None else own)


def model_resource_fn(config: dict[str, Any], rule: str, key: str) -> Callable[[Any], int]:
    """:func:`model_resource` as a function of the job's wildcards (a rule's ``resources`` entry)."""

    def resource(wildcards: Any) -> int:
        return model_resource(config, rule, key, wildcards.model)

    return resource


def methods_per_task(config: dict[str, Any]) -> bool:
    """True when each method runs one job per (model, task) (``methods.jobs: per_task``), False for one job per
    model over every task of ``corpus.tasks`` (one model load and one start-up for all tasks)."""
    return (config.get("methods") or {}).get("jobs", "per_model") == "per_task"


def check_job_resources(config: dict[str, Any]) -> None:
    """Refuse ``job_resources`` entries for rules that take none from it (a typo would silently do nothing)."""
    for rule in config.get("job_resources") or {}:
        if rule not in JOB_RULES:
            raise ConfigError(
                f"job_resources.{rule}: not a rule whose resources the config sets; one of {', '.join(JOB_RULES)}"
            )


# --------------------------------------------------------------------------- memory of the index and search jobs
# One formula each, used by the rules (workflow/rules/index.smk, retrieve.smk) and by the plan.

MiB = 2**20
READ_BLOCK_ROWS = 65_536  # rows of vectors tttnn.retrieval.index reads at a time (NpyRows)


class PlanError(ValueError):
    """A config the cost model cannot price; the message names the key to change."""


def parse_factory(factory: str) -> dict[str, int | str]:
    """The parts of a faiss factory string the memory model needs: IVF lists, code bytes per vector."""
    parts: dict[str, int | str] = {"nlist": 0}
    for token in factory.replace(" ", "").split(","):
        if m := re.fullmatch(r"IVF(\d+)(?:_HNSW\d+)?", token):
            parts["nlist"] = int(m.group(1))
        elif m := re.fullmatch(r"PQ(\d+)(?:x(\d+))?(?:np)?", token):
            parts["kind"], parts["m"], parts["nbits"] = "pq", int(m.group(1)), int(m.group(2) or 8)
        elif m := re.fullmatch(r"SQ(\d+|fp16)", token):
            parts["kind"], parts["sq"] = "sq", 16 if m.group(1) == "fp16" else int(m.group(1))
        elif token == "Flat":
            parts["kind"] = "flat"
        elif re.fullmatch(r"(OPQ|PCAR?)\d+(_\d+)?", token):
            continue
        else:
            raise PlanError(f"index.factory: the plan cannot price the faiss component {token!r} of {factory!r}")
    parts.setdefault("kind", "flat")
    return parts


def index_bytes(factory: str, n: int, d: int) -> float:
    """RAM of a faiss index over ``n`` vectors of dimension ``d``: ``Flat`` 4 d bytes per vector; ``PQm`` m
    bytes (x nbits / 8) plus its codebooks (256 x d floats); ``SQb`` d x b / 8; under ``IVF`` each vector
    also stores its 8-byte id, and the coarse centroids take nlist x d floats."""
    f = parse_factory(factory)
    if f["kind"] == "pq":
        code = int(f["m"]) * int(f["nbits"]) / 8
        extra = (2 ** int(f["nbits"])) * d * 4
    elif f["kind"] == "sq":
        code, extra = d * int(f["sq"]) / 8, 2 * d * 4
    else:
        code, extra = 4.0 * d, 0
    nlist = int(f["nlist"])
    if nlist:
        return n * (code + 8) + nlist * d * 4 + extra
    return n * code + extra


def index_job_mem_mb(factory: str, n: int, d: int, train_size: int) -> int:
    """What an index job asks for: the index (:func:`index_bytes`; the flat vectors' size for a component the
    model cannot price), a compressed index's training sample and one block of rows read, +20% and 1 GB."""
    try:
        parts = parse_factory(factory)
        flat = parts["kind"] == "flat" and not parts["nlist"]
        need = index_bytes(factory, n, d)
    except PlanError:
        flat, need = False, 4.0 * n * d
    sample = 0 if flat else min(n, train_size) * d * 4
    return int(1000 + 1.2 * (need + sample + min(n, READ_BLOCK_ROWS) * d * 4) / MiB)


def search_job_mem_mb(index_file_bytes: float) -> int:
    """What a search job asks for: its index as saved, +20%, and 1.5 GB for the queries and a batch of texts."""
    return int(1500 + 1.2 * index_file_bytes / MiB)
