"""Checks of a validated workflow config that a JSON schema cannot express, each naming its key."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from tttnn.core.settings import LRTuneSettings, TTTConfig
from tttnn.data.tasks import MINIPILE_TASKS, PILE_TASKS
from tttnn.models.specs import HUB_ID, hub_dir, local_spec, looks_local


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with the offending key."""


def _check_model_path(key: str, path: str | dict, resources: str | os.PathLike = "resources") -> None:
    if isinstance(path, dict):  # a GGUF split across package files: checked (parts, hash) when joined
        return
    if path.startswith("package:"):
        if "/" not in path.removeprefix("package:"):
            raise ConfigError(f"{key}: expected package:<module>/<file>, got {path!r}")
        return
    local = looks_local(path)
    if local and not Path(path).expanduser().exists():
        raise ConfigError(f"{key}: local model path {path!r} does not exist")
    p = Path(path).expanduser()
    if local and p.is_dir() and not (p / "config.json").is_file() and not (p / "modules.json").is_file():
        raise ConfigError(f"{key}: {path!r} is a directory without config.json: not a saved model")
    fetched = hub_dir(resources, path).is_dir()
    if not local and HUB_ID.match(path) and _offline() and not _hub_cached(path) and not fetched:
        raise ConfigError(
            f"{key}: {path!r} is a hub id, but HF_HUB_OFFLINE is set and it is not in the local cache nor fetched "
            f"into {resources}/hub/: run `snakemake download` where the hub can be reached"
        )
    if not local and not HUB_ID.match(path):
        raise ConfigError(f"{key}: {path!r} is neither an existing path nor a hub id like 'gpt2' or 'org/name'")


def coerce_overrides(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Parse strings where the schema wants numbers, booleans or lists, in place.

    ``--config "retrieve={k: 5}"`` reaches the workflow as ``{"k": "5"}`` (Snakemake reads nested values
    as plain strings); YAML-parsing such strings makes nested command-line overrides work.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())

    def types(node: dict[str, Any]) -> set[str]:
        t = node.get("type", [])
        out = {t} if isinstance(t, str) else set(t)
        for alt in node.get("oneOf", []) + node.get("anyOf", []):  # a const ("auto") parses as itself
            out |= types(alt) | ({"const"} if "const" in alt else set())
        if "enum" in node:
            out |= {type(v).__name__.replace("str", "string") for v in node["enum"]}
        return out

    def walk(value: Any, node: dict[str, Any]) -> Any:
        if isinstance(value, str) and node and "string" not in types(node) and types(node):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
        if isinstance(value, dict):
            props = node.get("properties", {})
            extra = node.get("additionalProperties")
            for k in list(value):
                sub = props.get(k, extra if isinstance(extra, dict) else {})
                value[k] = walk(value[k], sub)
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            value = [walk(v, node["items"]) for v in value]
        return value

    walk(config, schema)


def chunking_key(config: dict[str, Any]) -> str:
    """The folder name of chunks, embeddings and indexes: the embedder's name and the chunking settings.

    Chunks are cut with the embedder's tokenizer, so two embedders (or two chunk sizes) never share them.
    """
    chunk = config.get("chunk", {})
    emb = config["embedder"]
    if chunk.get("mode", "document") == "document":
        return f"{emb['name']}-doc"
    size = chunk.get("size", 256)
    return f"{emb['name']}-w{size}s{chunk.get('stride') or size}"


def report_name(config: dict[str, Any]) -> str:
    """The run's name for tables and figures; a run restricted with ``tasks`` gets its own (``run+task+...``)."""
    tasks = config.get("tasks")
    if not tasks or list(tasks) == list(config["corpus"]["tasks"]):
        return config["run"]
    return "+".join([config["run"], *tasks])


def method_names(config: dict[str, Any]) -> list[str]:
    """Result folder names of the baselines and ablations the config enables (see ``methods`` in the schema)."""
    m = config.get("methods") or {}
    names = []
    if m.get("incontext") is not None:
        names.append("incontext")
    if m.get("interpolation") is not None:
        names += ["interpolation", "interpolation_valid"]
    if m.get("dynamic_eval") is not None:
        names.append("dynamic_eval")
    if m.get("order") is not None:
        names += [f"order-{o}" for o in m["order"].get("orders", ["farthest", "batch"])]
    if m.get("index_size") is not None:
        names += [f"index_size-{n}" for n in index_size_shards(config)]
    return names


def index_size_shards(config: dict[str, Any]) -> list[int]:
    """Numbers of shards of the index-size ablation (fractions of ``corpus.n_shards``; all shards = the TTT run)."""
    n = config["corpus"]["n_shards"]
    fracs = (config.get("methods") or {}).get("index_size", {}).get("fractions", [0.125, 0.25, 0.5])
    return sorted({round(f * n) for f in fracs} - {0, n})


def _check_index_fractions(config: dict[str, Any]) -> None:
    """Every index-size fraction must select some but not all of the shards (else its job would vanish)."""
    section = (config.get("methods") or {}).get("index_size")
    if section is None:
        return
    n = config["corpus"]["n_shards"]
    for f in section.get("fractions", [0.125, 0.25, 0.5]):
        m = round(f * n)
        if not 1 <= m < n:
            what = "no shard" if m < 1 else "every shard (that is the TTT run itself)"
            raise ConfigError(
                f"methods.index_size.fractions: {f} of corpus.n_shards = {n} selects {what}; use fractions "
                f"between {1 / n:.3g} and {(n - 1) / n:.3g}, more shards, or drop methods.index_size"
            )


def max_index_chunks(config: dict[str, Any]) -> int | None:
    """An upper bound on the chunks the index can hold, from the corpus settings alone (None: unbounded).

    minipile: ``max_train_docs`` per task, each at most ``max_chars`` characters, so at most
    ``ceil(max_chars / stride)`` windows (a token covers at least one character); the Pile: ``max_train_docs``
    in all, one chunk each in document mode.
    """
    corpus, chunk = config["corpus"], config.get("chunk", {})
    docs = corpus.get("max_train_docs")
    if docs is None:
        return None
    if corpus["source"] == "minipile":
        docs *= len(corpus["tasks"])
    if chunk.get("mode", "document") == "document":
        return docs
    max_chars = (corpus.get("minipile") or {}).get("max_chars", 4000) if corpus["source"] == "minipile" else None
    if max_chars is None:
        return None
    stride = chunk.get("stride") or chunk.get("size", 256)
    return docs * -(-max_chars // stride)


def embedder_dim(spec: str) -> int | None:
    """The embedding dimension of a local (or package) sentence-transformers/HF model, if it can be read cheaply."""
    import json

    from tttnn.models.load import resolve_spec

    try:
        path = Path(resolve_spec(spec))
    except FileNotFoundError:
        return None
    dims = [json.loads(c.read_text()).get("out_features") for c in sorted(path.glob("*_Dense/config.json"))]
    if dims and dims[-1]:
        return int(dims[-1])
    for cfg in (path / "config.json", path / "0_Transformer/config.json"):
        if cfg.is_file():
            return json.loads(cfg.read_text()).get("hidden_size")
    return None


def check_factory(factory: str, key: str = "index.factory", dim: int | None = None) -> None:
    """Let faiss build the index on the embedder's dimension when known, else a dimension its PQ accepts."""
    import faiss

    m = re.search(r"PQ(\d+)", factory)
    d = dim or (int(m.group(1)) * 4 if m else 64)
    try:
        faiss.index_factory(d, factory)
    except Exception as err:  # faiss raises RuntimeError with its C++ message
        msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}: faiss cannot build {factory!r} for {d}-dim vectors: {msg}") from err
    ivf = re.search(r"IVF(\d+)", factory)
    if ivf and int(ivf.group(1)) > 1_000_000:
        raise ConfigError(f"{key}: {factory!r} asks for {ivf.group(1)} inverted lists; that needs far more vectors")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", "", "false")


def _hub_cached(repo: str) -> bool:
    """Whether a hub id is in the local Hugging Face cache (usable offline)."""
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    return (home.expanduser() / f"models--{repo.replace('/', '--')}").is_dir()


def _merged_ttt(config: dict[str, Any], model: str) -> dict[str, Any]:
    """The ttt section with the model's ``models.<m>.ttt`` overrides on top."""
    return {**config.get("ttt", {}), **config["models"][model].get("ttt", {})}


def lr_is_auto(config: dict[str, Any], model: str) -> bool:
    """Whether a model trains with the rate that ``tune_lr`` chooses (``ttt.lr: auto``)."""
    return config["models"][model].get("train", True) and _merged_ttt(config, model).get("lr") == "auto"


def lr_tune_settings(config: dict[str, Any], model: str):
    """A model's ``ttt.lr_grid`` and ``ttt.lr_tune`` (with its ``models.<m>.ttt`` overrides)."""

    merged = _merged_ttt(config, model)
    given = {**(merged.get("lr_tune") or {}), **({"grid": merged["lr_grid"]} if "lr_grid" in merged else {})}
    try:
        return LRTuneSettings(**given)
    except Exception as err:
        raise ConfigError(f"models.{model}.ttt / ttt: lr_grid / lr_tune: {err}") from err


def ttt_config(config: dict[str, Any], model: str, lr: float | None = None) -> TTTConfig:
    """The TTT hyper-parameters of one model: the ttt section, the model's overrides, k from retrieve.

    With ``lr: auto`` the rate is ``lr`` (the one tune_lr chose); before it is known, the grid's smallest stands
    in (for checks and the plan, which the rate does not change)."""
    spec = config["models"][model]
    merged = _merged_ttt(config, model)
    for key in ("device", "gpus", "mem_mb", "runtime", "lr_grid", "lr_tune"):
        merged.pop(key, None)
    if merged.get("lr") == "auto":
        merged["lr"] = lr if lr is not None else lr_tune_settings(config, model).grid[0]
        merged["lr_source"] = "tuned" if spec.get("train", True) else "fixed"  # k = 0: the rate is never used
    if "dtype" in spec:
        merged["dtype"] = spec["dtype"]
    merged["k"] = config["retrieve"]["k"] if spec.get("train", True) else 0
    try:
        return TTTConfig(**merged)
    except Exception as err:
        raise ConfigError(f"models.{model}.ttt / ttt: {err}") from err


def _check_duplicates(key: str, values: list[Any] | None) -> None:
    dupes = sorted({v for v in values or [] if list(values or []).count(v) > 1})
    if dupes:
        raise ConfigError(f"{key}: {dupes} listed more than once")


def length_settings(config: dict[str, Any], model: str) -> dict[str, int]:
    """Every token length a model's jobs will feed it, by config key: TTT's windows, in-context's budget plus
    window (its own max_length when set), the methods' max_length."""
    cfg = ttt_config(config, model)
    out = {f"ttt.max_length (model {model})": cfg.max_length}
    methods = config.get("methods") or {}
    if model in (methods.get("models") or [m for m, s in config["models"].items() if s.get("train", True)]):
        for name in ("incontext", "interpolation", "dynamic_eval", "order", "index_size"):
            section = methods.get(name)
            if section is None:
                continue
            window = section.get("max_length") or cfg.max_length
            if name == "incontext" and section.get("budget") is not None:
                out[f"methods.incontext.budget + window ({section['budget']} + {window})"] = section["budget"] + window
            elif section.get("max_length"):
                out[f"methods.{name}.max_length"] = window
    return out


def check_lengths(config: dict[str, Any], model: str, limit: int | None) -> None:
    """Refuse any length setting of ``model`` beyond its ``limit`` positions, naming the key and both numbers."""
    if limit is None:
        return
    for key, value in length_settings(config, model).items():
        if value > limit:
            raise ConfigError(f"{key} = {value} exceeds model {model}'s {limit} positions: lower it to at most {limit}")


def model_positions(model_dir: str | os.PathLike) -> int | None:
    """The position limit in a prepared model directory's config.json, or None when it does not say."""
    import json

    from tttnn.models.load import config_positions

    cfg = Path(model_dir) / "config.json"
    return config_positions(json.loads(cfg.read_text())) if cfg.is_file() else None


def performance_settings(config: dict[str, Any], model: str) -> dict[str, Any]:
    """A model's run settings that are not params: ``ttt.eval_batch_size``, ``batch_documents`` and the device
    (speed only, so changing one reruns nothing), and ``tf32`` / ``compile`` (in the params too when on)."""
    from tttnn.core.settings import PERFORMANCE_KEYS, RESULT_WHEN_ON

    cfg = ttt_config(config, model).model_dump()
    keys = PERFORMANCE_KEYS + RESULT_WHEN_ON
    return {**{k: cfg[k] for k in keys}, "device": config.get("ttt", {}).get("device", "auto")}


def method_section(config: dict[str, Any], method: str) -> dict[str, Any]:
    """The methods keys one method's results depend on: its own section, k, n_docs and eval_at (so changing
    another method's settings reruns only that method)."""
    methods = config.get("methods") or {}
    return {key: methods.get(key) for key in ("k", "n_docs", "eval_at", section_name(method))}


def section_name(method: str) -> str:
    """The methods section a method's settings live in (``order-batch`` -> ``order``, ``interpolation_valid`` ->
    ``interpolation``)."""
    return method.split("-")[0].removesuffix("_valid")


def check_config(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for a config that validates against the schema but cannot run."""
    corpus = config["corpus"]
    _check_duplicates("corpus.tasks", corpus["tasks"])
    _check_duplicates("tasks", config.get("tasks"))
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
                if looks_local(src, (".jsonl", ".zst", ".json", ".gz")) and not Path(src).expanduser().exists():
                    raise ConfigError(f"corpus.pile.{split}: file {src!r} does not exist")
    mp = corpus.get("minipile") or {}
    if corpus["source"] == "minipile" and mp.get("min_chars", 0) >= mp.get("max_chars", float("inf")):
        raise ConfigError(
            f"corpus.minipile.min_chars = {mp['min_chars']} must be below corpus.minipile.max_chars = {mp['max_chars']} "
            "(texts are cut to max_chars at a line break, then those shorter than min_chars are dropped)"
        )
    k = config["retrieve"]["k"]
    if k < 1:
        raise ConfigError("retrieve.k: must be at least 1")
    bound = max_index_chunks(config)
    if bound is not None and k > bound:
        raise ConfigError(
            f"retrieve.k = {k}, but the corpus settings allow at most {bound} chunks in the index "
            "(corpus.max_train_docs, corpus.tasks, chunk size): lower retrieve.k"
        )

    resources = config.get("resources_dir", "resources")
    emb_path = local_spec(config["embedder"]["path"], resources)  # a fetched hub embedder tells its dimension
    check_factory(config["index"].get("factory", "Flat"), dim=embedder_dim(emb_path))
    methods = config.get("methods") or {}
    if methods.get("k") is not None and methods["k"] > k:
        raise ConfigError(
            f"methods.k = {methods['k']} exceeds retrieve.k = {k}: the methods can use only the neighbours "
            "retrieved; raise retrieve.k or lower methods.k"
        )
    _check_index_fractions(config)
    unknown = [m for m in methods.get("models") or [] if m not in config["models"]]
    if unknown:
        raise ConfigError(f"methods.models: {unknown} not in models {sorted(config['models'])}")
    if methods.get("interpolation") is not None and config["corpus"].get("n_valid_docs", 0) < 1:
        raise ConfigError(
            "methods.interpolation: needs corpus.n_valid_docs >= 1 (alpha is chosen on held-out documents)"
        )
    for name, spec in config["models"].items():
        _check_model_path(f"models.{name}.path", spec["path"], resources)
        # a model already prepared tells its position limit now; otherwise prepare_model checks it
        check_lengths(config, name, model_positions(Path(config.get("resources_dir", "resources")) / "models" / name))
        cfg = ttt_config(config, name)
        if cfg.eval_at is not None and any(n > config["retrieve"]["k"] for n in cfg.eval_at):
            raise ConfigError(f"ttt.eval_at: values above retrieve.k ({config['retrieve']['k']})")
    for key in ("path", "tokenizer"):
        spec = config["embedder"].get(key)
        if spec and not spec.startswith("package:"):
            _check_model_path(f"embedder.{key}", spec, resources)
