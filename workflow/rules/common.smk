# Config validation and the helpers that compute paths, inputs and targets.
import os
import re

import psutil
from snakemake.utils import validate

from tttnn.config import check_config, chunking_key, coerce_overrides, method_names, report_name, ttt_config
from tttnn.tasks import shard_names

coerce_overrides(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
validate(config, "../schemas/config.schema.yaml")
check_config(config)

# On one machine, never start jobs whose declared mem_mb add up to more than 85% of its RAM (the large
# model alone needs 9 GB); `--resources mem_mb=N` sets another limit. Cluster runs (remote nodes) are not
# limited: there each job asks the scheduler for its own mem_mb.
if workflow.nodes is None and workflow.is_main_process and "mem_mb" not in workflow.global_resources:
    workflow.register_resource("mem_mb", int(0.85 * psutil.virtual_memory().total / 2**20))

RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
RUN = config["run"]
CORPUS = config["corpus"]["name"]
ALL_TASKS = config["corpus"]["tasks"]
TASKS = config["tasks"] or ALL_TASKS
# a run restricted to some tasks writes its tables and figures under its own name, never over the full run's
REPORT = report_name(config)
SHARDS = shard_names(config["corpus"]["n_shards"])
# chunks, embeddings and indexes are keyed by the embedder and the chunking settings, so several coexist
EMBEDDER = chunking_key(config)
INDEX = config["index"]["name"]
MODELS = list(config["models"])
TRAINED = [m for m, spec in config["models"].items() if spec.get("train", True)]
UNTRAINED = [m for m in MODELS if m not in TRAINED]
# model-name patterns that send a model to the ttt rule (per task) or the evaluate rule (all tasks at once)
TRAINED_RE = "|".join(re.escape(m) for m in TRAINED) or "(?!)"
UNTRAINED_RE = "|".join(re.escape(m) for m in UNTRAINED) or "(?!)"
METHOD_MODELS = [m for m in TRAINED if m in (config.get("methods", {}).get("models") or TRAINED)]
METHODS = method_names(config)
SPLITS = ["test", "valid"] if config["corpus"]["n_valid_docs"] else ["test"]
FIGURES = ["bpb_by_task", "bpb_vs_neighbors", "training_cost", "model_comparison"]
METHOD_FIGURES = ["methods", "order", "index_size"]
RETRIEVAL = f"{CORPUS}/{EMBEDDER}/{INDEX}"


wildcard_constraints:
    shard=r"\d+",
    task=r"[a-z0-9-]+",
    model=r"[A-Za-z0-9_.-]+",
    run=r"[A-Za-z0-9_.+-]+",
    corpus=r"[A-Za-z0-9_.-]+",
    embedder=r"[A-Za-z0-9_.-]+",
    faiss_index=r"[A-Za-z0-9_.-]+",
    split=r"test|valid",
    nshards=r"\d+",
    order=r"farthest|batch",


def R(path):
    """A path under the results folder."""
    return os.path.join(RESULTS, path)


def model_source(wildcards):
    return config["models"][wildcards.model]["path"]


def model_prepare_mem(wildcards):
    return config["models"][wildcards.model].get("prepare_mem_mb", 8000)


def model_mem(wildcards):
    return config["models"][wildcards.model].get("mem_mb", config["ttt"]["mem_mb"])


def model_docs(wildcards):
    return config["models"][wildcards.model].get("n_docs")


def model_ttt(wildcards):
    return ttt_config(config, wildcards.model).model_dump()


def shard_docs(wildcards):
    """The shard's documents, needed only when a neighbour trains on its whole document."""
    if config["retrieve"]["neighbor_text"] == "document":
        return R(f"corpus/{wildcards.corpus}/train/{wildcards.shard}.parquet")
    return []


def shard_vectors(wildcards):
    """The shard's float32 embeddings, read from disk when compressed-index results are re-ranked."""
    if config["index"]["rerank"]:
        return R(f"embeddings/{wildcards.corpus}/{wildcards.embedder}/{wildcards.shard}.npy")
    return []


def subset_parts(wildcards):
    """The map outputs of the first ``nshards`` shards (the index-size ablation reuses them)."""
    n = int(wildcards.nshards)
    return expand(
        R("neighbors/{corpus}/{embedder}/{faiss_index}/{split}/{task}/{shard}.parquet"),
        shard=SHARDS[:n],
        allow_missing=True,
    )


def ttt_results():
    return expand(R("ttt/{run}/{model}/{task}.jsonl"), run=RUN, model=MODELS, task=TASKS)


def method_results():
    """Every baseline and ablation result of the trained models (see the methods section of the config)."""
    return expand(
        R("baselines/{run}/{model}/{method}/{task}.jsonl"), run=RUN, model=METHOD_MODELS, method=METHODS, task=TASKS
    )


def figure_targets():
    names = FIGURES + (METHOD_FIGURES if METHODS else []) + ["claims"]
    return expand(R("figures/{run}/{name}.{ext}"), run=REPORT, name=names, ext=["pdf", "png"])


def all_targets():
    tables = ["summary", "curves", "costs"] + (["methods"] if METHODS else []) + ["claims"]
    return figure_targets() + expand(R("tables/{run}/{name}.csv"), run=REPORT, name=tables)
