# Config validation and the helpers that compute paths, inputs and targets.
import os
import re

import psutil
from snakemake.utils import validate

from tttnn.config import (
    check_config,
    chunking_key,
    coerce_overrides,
    lr_is_auto,
    lr_tune_settings,
    method_names,
    method_section,
    report_name,
    ttt_config,
)
from tttnn.blocks import (
    block_file,
    block_ranges,
    block_size,
    blocks_enabled,
    check_blocks,
    n_blocks,
    rule_docs,
)
from tttnn.models.fetch import hub_downloads
from tttnn.models.specs import hub_dir, hub_repo
from tttnn.methods.lr_tune import chosen_lr
from tttnn.jobs import (
    check_job_resources,
    index_job_mem_mb,
    job_resource,
    methods_per_task,
    model_resource_fn,
    rule_runtime,
    search_job_mem_mb,
)
from tttnn.cost.plan import planned_block_sizes
from tttnn.cost.rates import cpu_calibration_path
from tttnn.data.tasks import shard_names

coerce_overrides(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
validate(config, "../schemas/config.schema.yaml")
check_config(config)
check_job_resources(config)
check_blocks(config)

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
# hub repositories the jobs load, fetched on the submit host into resources/hub/ (workflow/rules/fetch.smk)
HUB = hub_downloads(config)
HUB_RE = "|".join(re.escape(k) for k in HUB) or "(?!)"


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
    block=r"\d+",


def R(path):
    """A path under the results folder."""
    return os.path.join(RESULTS, path)


def model_source(wildcards):
    return config["models"][wildcards.model]["path"]


def hub_repo_id(wildcards):
    return HUB[wildcards.repo]["repo"]


def hub_weights(wildcards):
    return HUB[wildcards.repo]["weights"]


def hub_targets():
    """Every fetched hub folder: the target of `snakemake download`."""
    return [str(hub_dir(RESOURCES, v["repo"])) for v in HUB.values()]


def fetched(spec):
    """The fetched folder of a hub-id spec as a job input ([] for package files and local paths)."""
    repo = hub_repo(spec)
    return str(hub_dir(RESOURCES, repo)) if repo is not None else []


def model_download(wildcards):
    return fetched(config["models"][wildcards.model]["path"])


def embedder_download(wildcards):
    """Inputs of the jobs that load the embedder: its fetched folder, and its tokenizer's when separate."""
    e = config["embedder"]
    return {"embedder": fetched(e["path"]), "tokenizer": fetched(e.get("tokenizer"))}


def chunk_tokenizer_download():
    """The fetched tokenizer that cuts windows (none in document mode, which loads no tokenizer)."""
    if config["chunk"].get("mode", "document") != "window":
        return []
    return fetched(config["embedder"].get("tokenizer") or config["embedder"]["path"])


def model_prepare_mem(wildcards):
    return config["models"][wildcards.model].get("prepare_mem_mb", 8000)


def model_res(rule, key):
    """A model rule's resource (mem_mb, runtime, gpus): job_resources.<rule>, else models.<m>, else ttt."""
    return model_resource_fn(config, rule, key)


def job_res(rule, key, default):
    """A rule's resource: job_resources.<rule>.<key> when set, else the default (a number or a function)."""
    return job_resource(config, rule, key, default)


def model_docs(wildcards):
    return config["models"][wildcards.model].get("n_docs")


def tuned_lr(model):
    """The rate tune_lr chose for a model with `ttt.lr: auto` (None otherwise). Read through the checkpoint, so a
    job's params hold the rate itself: a tuning rerun that picks the same rate reruns nothing downstream."""
    if not lr_is_auto(config, model):
        return None
    return chosen_lr(checkpoints.tune_lr.get(run=RUN, model=model).output[0])


def lr_table_file(wildcards):
    """The tune_lr table a training job waits for (`ttt.lr: auto`); ancient: only the chosen rate (a param)
    decides whether the job reruns, not the table's time stamp."""
    if not lr_is_auto(config, wildcards.model):
        return []
    return ancient(checkpoints.tune_lr.get(run=RUN, model=wildcards.model).output[0])


def model_ttt(wildcards):
    """The model's TTT settings that determine results (performance settings are read by the scripts), with the
    tuned rate under `ttt.lr: auto`."""
    return ttt_config(config, wildcards.model, tuned_lr(wildcards.model)).result_settings()


def model_ttt_no_training(wildcards):
    """TTT settings of a method that never trains (in-context, interpolation): without the rate, so these jobs
    neither wait for tune_lr nor rerun when the rate changes."""
    settings = ttt_config(config, wildcards.model).result_settings()
    return {k: v for k, v in settings.items() if k not in ("lr", "lr_source")}


def lr_tune_params(wildcards):
    """tune_lr's params: the model's TTT settings but the rate, and the grid, k, documents and near-tie rule."""
    return {"ttt": model_ttt_no_training(wildcards), "tune": lr_tune_settings(config, wildcards.model).model_dump()}


LR_MODELS = [m for m in TRAINED if lr_is_auto(config, m)]


def method_params(method):
    """Params of a method rule: only the keys its results depend on."""
    return method_section(config, method)


RETRIEVE_QUERY = {key: config["retrieve"][key] for key in ("query", "split_max_tokens")}


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


# methods.jobs: per_task runs each method as one job per (model, task), per_model as one job per model over every
# task of corpus.tasks (one model load; cheaper where job start-ups dominate, as on the 2-core default run)
PER_TASK_METHODS = methods_per_task(config)


def method_files(pattern):
    """A method job's files from a pattern with {task}: that task's (per-task jobs, blocks) or every corpus task's."""
    if PER_TASK_METHODS or BLOCKED:
        return pattern
    return expand(pattern, task=ALL_TASKS, allow_missing=True)


def method_output(stem):
    """A method job's output files for ``<stem>/{task}.jsonl``: that task's, every corpus task's, or one block."""
    return doc_output(f"{stem}/{{task}}") if BLOCKED else method_files(R(f"{stem}/{{task}}.jsonl"))


def method_job_file(kind, name, ext):
    """Log or benchmark of a method job, named by its wildcards: <kind>/<name>[/<task>[/<block>]]<ext> under
    results."""
    parts = [kind, name, "{task}", "{block}"] if BLOCKED else [kind, name, "{task}"] if PER_TASK_METHODS else [kind, name]
    return R(os.path.join(*parts) + ext)


# cluster.max_runtime / cluster.block_docs: every per-document rule (ttt, evaluate, the methods) runs one job per
# block of a task's documents into blocks/<its file's path>/<block>.jsonl, and merge_blocks joins them into the
# task's file in document order (workflow/rules/blocks.smk)
BLOCKED = blocks_enabled(config)
PLANNED_BLOCKS = planned_block_sizes(config) if BLOCKED else {}


def doc_output(stem):
    """A per-document rule's output for the file ``<stem>.jsonl`` (``stem`` with wildcards, under results): the
    task's file, or with blocks one block of it."""
    return block_file(RESULTS, stem, "{block}") if BLOCKED else R(f"{stem}.jsonl")


def doc_job_file(kind, name, ext):
    """Log or benchmark of a ttt or evaluate job: <kind>/<name>[/<block>]<ext> (``name`` ends with the task)."""
    return R(os.path.join(kind, name, "{block}") + ext if BLOCKED else os.path.join(kind, name) + ext)


def eval_files(pattern):
    """evaluate's files from a pattern with {task}: every corpus task's (one job per model), or with blocks the
    one task's."""
    return pattern if BLOCKED else expand(pattern, task=ALL_TASKS, allow_missing=True)


def eval_job_file(kind):
    """Log or benchmark of an evaluate job."""
    ext = ".log" if kind == "logs" else ".tsv"
    return doc_job_file(kind, "evaluate/{run}/{model}/{task}", ext) if BLOCKED else R(f"{kind}/evaluate/{{run}}/{{model}}{ext}")


def block_rule(kind, model, name):
    """Which rule writes the blocks of ``<kind>/<run>/<model>/<name>.jsonl``, where name is a task or method/task."""
    if kind == "ttt":
        return "ttt" if model in TRAINED else "evaluate"
    return Path(name).parts[0].split("-")[0]


def block_parts(wildcards):
    """merge_blocks' inputs: every block of one task's file, in document order."""
    rule_name = block_rule(wildcards.kind, wildcards.model, wildcards.name)
    size = block_size(config, PLANNED_BLOCKS, rule_name, wildcards.model)
    stem = f"{wildcards.kind}/{wildcards.run}/{wildcards.model}/{wildcards.name}"
    n = n_blocks(rule_docs(config, rule_name, wildcards.model), size)
    return [block_file(RESULTS, stem, b) for b in range(n)]


def block_params(rule):
    """Params of a per-document rule: with blocks, its block's [start, stop) of the task's documents; none
    otherwise (so a run without blocks keeps the params of its finished jobs)."""
    if not BLOCKED:
        return {}

    def block(wildcards):
        size = block_size(config, PLANNED_BLOCKS, rule, wildcards.model)
        ranges = block_ranges(rule_docs(config, rule, wildcards.model), size)
        return list(ranges[int(wildcards.block)])

    return {"block": block}


def method_results():
    """Every baseline and ablation result of the trained models (see the methods section of the config)."""
    return expand(
        R("baselines/{run}/{model}/{method}/{task}.jsonl"), run=RUN, model=METHOD_MODELS, method=METHODS, task=TASKS
    )


def missing_results():
    """Per-document result files that are absent, e.g. removed by a job that failed: asked for directly by `all` and
    `figures`, so they are rebuilt (and the tables after them) even where the tables from an earlier run exist
    (Snakemake alone builds a missing intermediate file only when something downstream must run)."""
    return [f for f in ttt_results() + method_results() + lr_tables() if not os.path.exists(f)]


def figure_targets():
    names = FIGURES + (METHOD_FIGURES if METHODS else []) + ["claims"] + (["lr"] if LR_MODELS else [])
    return expand(R("figures/{run}/{name}.{ext}"), run=REPORT, name=names, ext=["pdf", "png"])


def lr_tables():
    """The per-model tune_lr tables gathered into tables/<run>/lr.csv."""
    return expand(R("lr/{run}/{model}.csv"), run=RUN, model=LR_MODELS)


def all_targets():
    tables = ["summary", "curves", "costs"] + (["methods"] if METHODS else []) + ["claims"] + (["lr"] if LR_MODELS else [])
    return figure_targets() + expand(R("tables/{run}/{name}.csv"), run=REPORT, name=tables)


# Params of the corpus, chunk, embed and index rules: only the keys that decide their files, so that a speed
# setting (embedder.batch_size, device, gpus; index.nprobe) changed after a failure reruns nothing.
def corpus_params(part):
    """Corpus keys of a Pile job: a train shard's (its files, shard count, cap) or the test sample's."""
    c = config["corpus"]
    common = {"source": c["source"], "skip_bad_records": c["skip_bad_records"]}
    if part == "train":
        return {
            **common,
            "pile": {"train": c["pile"]["train"]},
            "n_shards": c["n_shards"],
            "max_train_docs": c["max_train_docs"],
        }
    keys = ["tasks", "n_test_docs", "n_valid_docs", "seed"]
    return {**common, **{k: c[k] for k in keys}, "pile": {"test": c["pile"]["test"]}}


def embedder_params():
    """Embedder keys that decide the vectors (batch size, device and GPUs are read by the script)."""
    e = config["embedder"]
    keys = ("path", "kind", "tokenizer", "max_seq_length") + (("dtype",) if e.get("dtype", "float32") != "float32" else ())
    # the dtype only when half precision: float32 runs keep the params their finished jobs were recorded with
    return {k: e[k] for k in keys if k in e}


def index_mem_mb(wildcards, input):
    """Memory of an index job from its shard's vectors (tttnn.jobs.index_job_mem_mb, the plan's formula too)."""
    import numpy as np

    with open(input[0], "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape = read(fh)[0]
    n, dim = shape if len(shape) == 2 else (0, 1)
    return index_job_mem_mb(config["index"]["factory"], n, dim, config["index"]["train_size"])


def search_mem_mb(wildcards, input):
    """Memory of a search job from its index as saved (tttnn.jobs.search_job_mem_mb, the plan's formula too)."""
    return search_job_mem_mb(os.path.getsize(input.index))


def all_shard_docs(wildcards):
    """Every shard's documents, read by the reduce step when a neighbour trains on its whole document."""
    if config["retrieve"]["neighbor_text"] == "document":
        return expand(R("corpus/{corpus}/train/{shard}.parquet"), corpus=wildcards.corpus, shard=SHARDS)
    return []


# this machine's CPU rates for the plan, written by `snakemake calibrate`
CPU_CALIBRATION = cpu_calibration_path(config)


def cpu_rates():
    """This machine's CPU rates once `snakemake calibrate` has measured them (the file's text: a new calibration
    re-plans). A param, not an input: as an input, a missing model would make Snakemake redo the calibration."""
    return Path(CPU_CALIBRATION).read_text() if os.path.exists(CPU_CALIBRATION) else None
