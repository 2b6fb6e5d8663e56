"""Corpus sources written as parquet shards: the Pile (hub or local files) and the offline mini-Pile.

Contract: ``train/{shard}.parquet`` and ``test/{task}.parquet`` with columns ``doc_id, task, text``.
Later steps read only these files, never the source again.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from .io import write_parquet
from .tasks import PILE_SET_SLUGS, PILE_TASKS, shard_names  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

COLUMNS = ["doc_id", "task", "text"]


def pile_slug(set_name: str) -> str:
    """The task slug of a Pile set name (``"USPTO Backgrounds"`` -> ``uspto``)."""
    if set_name in PILE_SET_SLUGS:
        return PILE_SET_SLUGS[set_name]
    slug = re.sub(r"[^a-z0-9]+", "-", set_name.lower()).strip("-")
    if slug in PILE_TASKS:
        return slug
    raise ValueError(f"unknown Pile set name {set_name!r}")


def write_shards(train: pd.DataFrame, test: pd.DataFrame, out_train: Sequence[str], out_test: dict[str, str]) -> None:
    """Write train documents round-robin over ``out_train`` shards, test documents one file per task."""
    train = train.reset_index(drop=True)
    n = len(out_train)
    for i, path in enumerate(out_train):
        write_parquet(train.iloc[i::n][COLUMNS], path)
    for task, path in out_test.items():
        write_parquet(test[test["task"] == task][COLUMNS].reset_index(drop=True), path)


# --------------------------------------------------------------------------------------------- Pile


class _Reservoir:
    """Uniform sample of ``k`` items from a stream with bounded memory (Algorithm R), kept in stream order."""

    def __init__(self, k: int, rng: random.Random) -> None:
        self.k, self.rng, self.seen, self.items = k, rng, 0, []

    def add(self, item: dict) -> None:
        if self.seen < self.k:
            self.items.append((self.seen, item))
        else:
            j = self.rng.randint(0, self.seen)
            if j < self.k:
                self.items[j] = (self.seen, item)
        self.seen += 1

    def sample(self) -> list[dict]:
        return [it for _, it in sorted(self.items, key=lambda x: x[0])]


def _open_text_lines(path: Path) -> Iterator[bytes]:
    """Raw lines of a ``.jsonl`` or ``.jsonl.zst`` file (decoded later, so a bad byte can name its line)."""
    if path.suffix == ".zst":
        import io

        import zstandard

        with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as z:
            yield from io.BufferedReader(z)
    else:
        with open(path, "rb") as fh:
            yield from fh


def _local_records(files: Sequence[str], bad: list[str], skip_bad: bool) -> Iterator[dict]:
    """Pile-format records of local files; a record that is not UTF-8 JSON names its file and line."""
    for f in files:
        for lineno, raw in enumerate(_open_text_lines(Path(f)), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                where = f"{f}:{lineno}: {type(err).__name__}: {err}"
                if not skip_bad:
                    raise ValueError(f"{where} (set corpus.skip_bad_records: true to skip such records)") from err
                bad.append(where)
                log.warning("skipping a bad record: %s", where)
                continue
            yield {**row, "_where": f"{f}:{lineno}"}


def _pile_records(source: str | Sequence[str], split: str, bad: list[str] | None = None, skip_bad: bool = False):
    """Stream ``{text, task}`` from a hub id or local Pile-format ``.jsonl``/``.jsonl.zst`` files."""
    files = [source] if isinstance(source, str) else list(source)
    local = [f for f in files if Path(f).exists()]
    if local and len(local) != len(files):
        raise FileNotFoundError(f"Pile files not found: {sorted(set(files) - set(local))}")
    if local:
        rows: Iterator[dict] = _local_records(local, bad if bad is not None else [], skip_bad)
    elif len(files) == 1 and re.fullmatch(r"[\w.-]+/[\w.-]+", files[0]):
        import datasets

        rows = datasets.load_dataset(files[0], split=split, streaming=True)
    else:
        raise FileNotFoundError(f"Pile source {files} is neither local files nor a hub id")
    for i, row in enumerate(rows):
        meta = row.get("meta") or {}
        name = meta.get("pile_set_name") if isinstance(meta, dict) else None
        where = row.get("_where", f"{files[0]} record {i}")
        if name is None or not isinstance(row.get("text"), str):
            raise ValueError(f"{where}: record lacks a text string or meta.pile_set_name")
        yield {"task": pile_slug(name), "text": row["text"], "index": i}


def drop_empty(df: pd.DataFrame, what: str) -> tuple[pd.DataFrame, list[str]]:
    """Documents with no visible text cannot be scored or embedded: drop them, returning their ids."""
    empty = df["text"].str.strip().eq("")
    if empty.any():
        log.warning(
            "%s: dropping %d empty or whitespace-only documents: %s",
            what,
            int(empty.sum()),
            df.loc[empty, "doc_id"].tolist()[:10],
        )
    return df[~empty].reset_index(drop=True), df.loc[empty, "doc_id"].tolist()


def build_pile(
    train_source: str | Sequence[str],
    test_source: str | Sequence[str],
    tasks: Sequence[str],
    n_test_docs: int,
    max_train_docs: int | None,
    seed: int = 1216,
    bad: list[str] | None = None,
    skip_bad: bool = False,
    skipped_empty: dict[str, int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train documents (all tasks, capped) and a seeded sample of ``n_test_docs`` test documents per task.

    Bad records (not UTF-8 JSON) fail naming file and line, or with ``skip_bad`` are listed in ``bad``.
    Empty test documents are never sampled (they cannot be scored), so every sampled one is usable; how many
    were passed over per task is counted into ``skipped_empty``.
    """
    train_rows = []
    for r in _pile_records(train_source, "train", bad, skip_bad):
        if max_train_docs is not None and len(train_rows) >= max_train_docs:
            break
        train_rows.append({"doc_id": f"train-{r['index']}", "task": r["task"], "text": r["text"]})
    pools = {t: _Reservoir(n_test_docs, random.Random(f"{seed}:{t}")) for t in tasks}
    for r in _pile_records(test_source, "test", bad, skip_bad):
        if r["task"] not in pools:
            continue
        if r["text"].strip():
            pools[r["task"]].add(r)
        elif skipped_empty is not None:
            skipped_empty[r["task"]] = skipped_empty.get(r["task"], 0) + 1
    test_rows = []
    for task, pool in pools.items():
        if not pool.seen:
            raise ValueError(f"no test documents of task {task!r} in {test_source}")
        for r in pool.sample():
            test_rows.append({"doc_id": f"{task}-{r['index']}", "task": task, "text": r["text"]})
    return pd.DataFrame(train_rows, columns=COLUMNS), pd.DataFrame(test_rows, columns=COLUMNS)
