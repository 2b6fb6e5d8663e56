"""What each rule's jobs ask the scheduler for (mem_mb, runtime, gpus) and how the methods are cut into jobs.

Defaults come from the sections they belong to (``embedder``, ``ttt``, ``models.<m>``) or from the data
(index memory from the shard); ``job_resources.<rule>.<key>`` in the config overrides any of them, so a
cluster's sizes live in the config, validated, instead of in the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import ConfigError

__all__ = [
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


def job_resource(config: dict[str, Any], rule: str, key: str, default: Any) -> Any:
    """``job_resources.<rule>.<key>`` when the config sets it, else ``default`` (a number or a function of the
    job, as Snakemake's ``resources`` take them)."""
    value = ((config.get("job_resources") or {}).get(rule) or {}).get(key)
    return default if value is None else value


def model_resource(config: dict[str, Any], rule: str, key: str, model: str) -> int:
    """A model job's resource: ``job_resources.<rule>.<key>``, else the model's own ``models.<m>.<key>``, else the
    ``ttt`` section's (sizes follow the model: gpt-neo's TTT job needs more memory and time than gpt2's)."""
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
