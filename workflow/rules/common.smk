# Config validation and the helpers that compute paths, inputs and targets.
import os

from snakemake.utils import validate

from tttnn.config import check_config, ttt_config
from tttnn.tasks import shard_names

validate(config, "../schemas/config.schema.yaml")
check_config(config)

RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
RUN = config["run"]
CORPUS = config["corpus"]["name"]
ALL_TASKS = config["corpus"]["tasks"]
TASKS = config["tasks"] or ALL_TASKS
SHARDS = shard_names(config["corpus"]["n_shards"])
EMBEDDER = config["embedder"]["name"]
INDEX = config["index"]["name"]
MODELS = list(config["models"])
FIGURES = ["bpb_by_task", "bpb_vs_neighbors", "training_cost", "model_comparison"]
RETRIEVAL = f"{CORPUS}/{EMBEDDER}/{INDEX}"


wildcard_constraints:
    shard=r"\d+",
    task=r"[a-z0-9-]+",
    model=r"[A-Za-z0-9_.-]+",
    run=r"[A-Za-z0-9_.-]+",
    corpus=r"[A-Za-z0-9_.-]+",
    embedder=r"[A-Za-z0-9_.-]+",
    faiss_index=r"[A-Za-z0-9_.-]+",


def R(path):
    """A path under the results folder."""
    return os.path.join(RESULTS, path)


def model_source(wildcards):
    return config["models"][wildcards.model]["path"]


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


def ttt_results():
    return expand(R("ttt/{run}/{model}/{task}.jsonl"), run=RUN, model=MODELS, task=TASKS)


def figure_targets():
    return expand(R("figures/{run}/{name}.{ext}"), run=RUN, name=FIGURES, ext=["pdf", "png"])


def all_targets():
    tables = expand(R("tables/{run}/{name}.csv"), run=RUN, name=["summary", "curves", "costs"])
    return figure_targets() + tables
