"""Hub downloads on the submit host: every hub id a config names, fetched once into ``<resources>/hub/<key>``.

Compute nodes of many clusters have no internet, so the workflow splits *fetch* from *prepare*: the local
rule ``fetch_hub`` (run by Snakemake on the host that submits the jobs; ``snakemake download`` runs only
these) downloads a repository's config, tokenizer and weight files and nothing else, which is cheap in CPU
and memory; every compute job (prepare_model's conversion, chunk, embed, ttt, the methods, ...) then loads
the local copy and never resolves a hub id, so it works with ``HF_HUB_OFFLINE=1``. Specs that are not hub
ids (``package:`` files, local paths, split GGUF parts) need no download and add no job.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tttnn.core.resume import stamp_verified, write_manifest
from tttnn.io import atomic_dir
from tttnn.models.specs import hub_key, hub_repo, local_spec

log = logging.getLogger(__name__)

# config, tokenizer and vocabulary files (sentence-transformers' module folders included: fnmatch's * spans "/")
TOKENIZER_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "tokenizer*", "vocab*", "merges*"]
# (snapshot_download also takes these patterns, so only the needed files leave the hub)
SAFETENSORS_PATTERNS = ["*.safetensors"]
# only when a repository has no safetensors: the PyTorch weights, never optimizer or training state
BIN_PATTERNS = ["*pytorch_model*.bin"]
# other runtimes' copies of a model: never downloaded
SKIP_DIRS = ("onnx/", "openvino/", "coreml/")
FETCHED = "FETCHED.json"


def hub_downloads(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every hub repository the config's jobs load, by folder key: ``{repo, weights}`` (weights False: a tokenizer
    only, e.g. ``embedder.tokenizer``)."""
    wants = [(spec["path"], True) for spec in config["models"].values()]
    emb = config["embedder"]
    wants.append((emb["path"], True))
    if emb.get("tokenizer"):
        wants.append((emb["tokenizer"], False))
    out: dict[str, dict[str, Any]] = {}
    for spec, weights in wants:
        repo = hub_repo(spec)
        if repo is not None:
            key = hub_key(repo)
            out[key] = {"repo": repo, "weights": weights or out.get(key, {}).get("weights", False)}
    return out


def local_embedder(embedder: Mapping[str, Any], resources: str | os.PathLike) -> dict[str, Any]:
    """Embedder settings with ``path`` and ``tokenizer`` as compute jobs load them (:func:`local_spec`)."""
    out = {**embedder, "path": local_spec(embedder["path"], resources)}
    if embedder.get("tokenizer"):
        out["tokenizer"] = local_spec(embedder["tokenizer"], resources)
    return out


def pick_files(names: list[str], weights: bool = True) -> list[str]:
    """The files of a repository that loading needs: config and tokenizer files, and with ``weights`` its
    safetensors, else (none there) its ``pytorch_model*.bin``; never TF/Flax/ONNX/Rust copies or training state."""
    names = [n for n in names if not n.startswith(SKIP_DIRS)]
    picked = [n for n in names if _matches(n, TOKENIZER_PATTERNS)]
    if weights:
        tensors = [n for n in names if _matches(n, SAFETENSORS_PATTERNS)]
        picked += tensors or [n for n in names if _matches(n, BIN_PATTERNS)]
    return sorted(set(picked))


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _snapshot(repo: str, patterns: list[str], revision: str | None) -> Path:
    """The repository's snapshot folder in the Hugging Face cache, downloading ``patterns`` (offline: cache only)."""
    from huggingface_hub import snapshot_download

    skip = [f"{d}*" for d in SKIP_DIRS]
    return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, ignore_patterns=skip))


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)


def fetch(repo: str, out_dir: str | os.PathLike, weights: bool = True, revision: str | None = None) -> Path:
    """Download ``repo``'s loadable files (:func:`pick_files`) into ``out_dir``, atomically (temp dir, then rename).

    Files come through the Hugging Face cache (so a login node's existing cache is reused, and ``HF_HUB_OFFLINE=1``
    works when the repository is cached there) and are hard-linked into ``out_dir`` where the file system allows,
    else copied. ``FETCHED.json`` records the repository, its commit and the files.
    """
    out = Path(out_dir)
    base = TOKENIZER_PATTERNS + (SAFETENSORS_PATTERNS if weights else [])
    snap = _snapshot(repo, base, revision)
    names = pick_files(_listing(snap), weights)
    if weights and not any(_matches(n, SAFETENSORS_PATTERNS + BIN_PATTERNS) for n in names):
        snap = _snapshot(repo, TOKENIZER_PATTERNS + BIN_PATTERNS, revision)  # an older repository: .bin weights
        names = pick_files(_listing(snap), weights)
    if weights and not any(_matches(n, SAFETENSORS_PATTERNS + BIN_PATTERNS) for n in names):
        raise FileNotFoundError(f"{repo}: no *.safetensors or pytorch_model*.bin weights in {snap}")
    if not any(n.endswith(".json") for n in names):
        raise FileNotFoundError(f"{repo}: no config or tokenizer files in {snap}")
    with atomic_dir(out) as tmp:
        for name in names:
            src, dst = (snap / name).resolve(), tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        record = {"repo": repo, "revision": revision, "commit": snap.name, "files": names}
        (tmp / FETCHED).write_text(json.dumps(record, indent=1))
        write_manifest(tmp)  # checked when a job loads it (tttnn.core.resume.verify_manifest)
    stamp_verified(out)
    size = sum((out / n).stat().st_size for n in names)
    log.info("fetched %s (commit %s): %d files, %.1f MB into %s", repo, snap.name, len(names), size / 1e6, out)
    return out
