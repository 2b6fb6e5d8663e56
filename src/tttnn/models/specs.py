"""What a model, embedder or tokenizer spec names (a package file, a local path, a split GGUF, a hub id) and where
a hub id's fetched copy lives: the one place both the config checks and the fetch step read it from."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_local(spec: str, suffixes: Sequence[str] = (".gguf",)) -> bool:
    """True for a spec meant as a local file or folder: an absolute, relative or home path, a name ending in one of
    ``suffixes``, or anything that exists here (else it may be a hub id)."""
    return spec.startswith(("/", ".", "~")) or spec.endswith(tuple(suffixes)) or Path(spec).exists()


def hub_repo(spec: Any) -> str | None:
    """The hub id a model/embedder/tokenizer spec names, or None for package files, local paths and split specs."""
    if not isinstance(spec, str) or spec.startswith("package:") or looks_local(spec):
        return None
    return spec if HUB_ID.match(spec) else None


def hub_key(repo: str) -> str:
    """A hub id as one folder name (``org/name`` -> ``org--name``, the hub cache's own spelling)."""
    return repo.replace("/", "--")


def hub_dir(resources: str | os.PathLike, repo: str) -> Path:
    """Where a hub repository is fetched to."""
    return Path(resources) / "hub" / hub_key(repo)


def local_spec(spec: Any, resources: str | os.PathLike) -> Any:
    """A spec as compute jobs load it: a hub id becomes its fetched folder; anything else is returned as is."""
    repo = hub_repo(spec)
    return str(hub_dir(resources, repo)) if repo is not None else spec
