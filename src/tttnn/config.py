"""Checks of a validated workflow config that a JSON schema cannot express, each naming its key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .settings import TTTConfig
from .tasks import MINIPILE_TASKS, PILE_TASKS

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with the offending key."""


def _check_model_path(key: str, path: str) -> None:
    if path.startswith("package:"):
        if "/" not in path.removeprefix("package:"):
            raise ConfigError(f"{key}: expected package:<module>/<file>, got {path!r}")
        return
    looks_local = path.startswith(("/", ".", "~")) or path.endswith(".gguf") or Path(path).exists()
    if looks_local and not Path(path).expanduser().exists():
        raise ConfigError(f"{key}: local model path {path!r} does not exist")
    if not looks_local and not HUB_ID.match(path):
        raise ConfigError(f"{key}: {path!r} is neither an existing path nor a hub id like 'gpt2' or 'org/name'")


def ttt_config(config: dict[str, Any], model: str) -> TTTConfig:
    """The TTT hyper-parameters of one model: the ttt section, the model's overrides, k from retrieve."""
    spec = config["models"][model]
    merged = {**config.get("ttt", {}), **spec.get("ttt", {})}
    for key in ("device", "dtype", "gpus", "mem_mb", "runtime"):
        merged.pop(key, None)
    merged["k"] = config["retrieve"]["k"] if spec.get("train", True) else 0
    try:
        return TTTConfig(**merged)
    except Exception as err:
        raise ConfigError(f"models.{model}.ttt / ttt: {err}") from err


def check_config(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for a config that validates against the schema but cannot run."""
    corpus = config["corpus"]
    known = MINIPILE_TASKS if corpus["source"] == "minipile" else PILE_TASKS
    bad = [t for t in corpus["tasks"] if t not in known]
    if bad:
        raise ConfigError(f"corpus.tasks: unknown task(s) {bad} for source {corpus['source']}; known: {known}")
    if config.get("tasks") is not None:
        bad = [t for t in config["tasks"] if t not in corpus["tasks"]]
        if bad:
            raise ConfigError(f"tasks: {bad} not in corpus.tasks {corpus['tasks']}")
    if corpus["source"] == "pile":
        pile = corpus.get("pile", {})
        for split in ("train", "test"):
            if split not in pile:
                raise ConfigError(f"corpus.pile.{split}: required when corpus.source is pile")
            srcs = [pile[split]] if isinstance(pile[split], str) else pile[split]
            for src in srcs:
                looks_local = src.startswith(("/", ".", "~")) or src.endswith((".jsonl", ".zst", ".json", ".gz"))
                if looks_local and not Path(src).expanduser().exists():
                    raise ConfigError(f"corpus.pile.{split}: file {src!r} does not exist")
    if config["retrieve"]["k"] < 1:
        raise ConfigError("retrieve.k: must be at least 1")
    for name, spec in config["models"].items():
        _check_model_path(f"models.{name}.path", spec["path"])
        cfg = ttt_config(config, name)
        if cfg.eval_at is not None and any(n > config["retrieve"]["k"] for n in cfg.eval_at):
            raise ConfigError(f"ttt.eval_at: values above retrieve.k ({config['retrieve']['k']})")
    if not config["embedder"]["path"].startswith("package:"):
        _check_model_path("embedder.path", config["embedder"]["path"])
