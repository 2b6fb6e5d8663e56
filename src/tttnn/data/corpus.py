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
from typing import Any

import pandas as pd

from tttnn.data.tasks import PILE_SET_SLUGS, PILE_TASKS, shard_names  # noqa: F401 (re-exported)
from tttnn.io import write_parquet

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


def _pile_records(
    source: str | Sequence[str],
    split: str,
    bad: list[str] | None = None,
    skip_bad: bool = False,
    data_files: Sequence[str] | None = None,
):
    """Stream ``{text, task}`` from a hub id or local Pile-format ``.jsonl``/``.jsonl.zst`` files.

    ``data_files`` restricts a hub dataset to some of its files (one train shard's), streamed too.
    """
    files = [source] if isinstance(source, str) else list(source)
    local = [f for f in files if Path(f).exists()]
    if local and len(local) != len(files):
        raise FileNotFoundError(f"Pile files not found: {sorted(set(files) - set(local))}")
    if local:
        rows: Iterator[dict] = _local_records(local, bad if bad is not None else [], skip_bad)
    elif len(files) == 1 and re.fullmatch(r"[\w.-]+/[\w.-]+", files[0]):
        import datasets

        kw = {"data_files": {split: list(data_files)}} if data_files else {}
        rows = datasets.load_dataset(files[0], split=split, streaming=True, **kw)
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


def sample_pile_test(
    test_source: str | Sequence[str],
    tasks: Sequence[str],
    n_test_docs: int,
    seed: int = 1216,
    bad: list[str] | None = None,
    skip_bad: bool = False,
    skipped_empty: dict[str, int] | None = None,
) -> pd.DataFrame:
    """A seeded sample of ``n_test_docs`` non-empty test documents per task, streamed (reservoir per task)."""
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
    return pd.DataFrame(test_rows, columns=COLUMNS)


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

    Everything in one process and in memory: for tests and small corpora; the workflow streams the Pile's
    train split shard by shard (:func:`stream_pile_shard`) and samples the test split (:func:`sample_pile_test`).
    Bad records (not UTF-8 JSON) fail naming file and line, or with ``skip_bad`` are listed in ``bad``.
    Empty test documents are never sampled (they cannot be scored), so every sampled one is usable; how many
    were passed over per task is counted into ``skipped_empty``.
    """
    train_rows = []
    for r in _pile_records(train_source, "train", bad, skip_bad):
        if max_train_docs is not None and len(train_rows) >= max_train_docs:
            break
        train_rows.append({"doc_id": f"train-{r['index']}", "task": r["task"], "text": r["text"]})
    test = sample_pile_test(test_source, tasks, n_test_docs, seed, bad, skip_bad, skipped_empty)
    return pd.DataFrame(train_rows, columns=COLUMNS), test


# ------------------------------------------------------------------------------------- train shards, streamed

# The Pile ships its train split as 30 files (so does its hub mirror): shard i streams file i.
PILE_TRAIN_FILES = [f"train/{i:02d}.jsonl.zst" for i in range(30)]


def shard_plan(n_files: int, n_shards: int, shard: int) -> tuple[list[int], int, int]:
    """``(files, every, offset)`` of train shard ``shard``: which input files it streams, keeping record
    ``r`` of them when ``r % every == offset``.

    With at least as many files as shards, shard i streams files i, i + n, i + 2n, ... whole; with fewer, the
    shards that share a file take its records in turn (one file and n shards: record r goes to shard r % n).
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0..{n_shards - 1}")
    if n_files < 1:
        raise ValueError("no train files to shard")
    if n_files >= n_shards:
        return list(range(shard, n_files, n_shards)), 1, 0
    f = shard % n_files
    return [f], len(range(f, n_shards, n_files)), shard // n_files


def shard_quota(max_train_docs: int | None, n_shards: int, shard: int) -> int | None:
    """Documents shard ``shard`` may index so that all shards together index at most ``max_train_docs``:
    ``max_train_docs // n_shards``, one more for the first ``max_train_docs % n_shards`` shards."""
    if max_train_docs is None:
        return None
    return max_train_docs // n_shards + int(shard < max_train_docs % n_shards)


def stream_pile_shard(
    source: str | Sequence[str],
    shard: int,
    n_shards: int,
    out_path: str,
    max_train_docs: int | None = None,
    bad: list[str] | None = None,
    skip_bad: bool = False,
    row_group_rows: int = 2000,
    row_group_bytes: int = 64 << 20,
) -> dict[str, Any]:
    """Stream train shard ``shard`` of a Pile source into parquet, one row group at a time; returns its counts.

    Memory is bounded by one row group (``row_group_rows`` documents or ``row_group_bytes`` of text), never the
    shard. Local files are split with :func:`shard_plan`; a hub id streams the shard's files of
    :data:`PILE_TRAIN_FILES` through ``datasets``. Empty documents are dropped (counted); documents are
    ``train-<shard>-<record>``, record counted in the shard's own stream; the first :func:`shard_quota` are kept.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tttnn.io import atomic_path

    files = [source] if isinstance(source, str) else list(source)
    local = all(Path(f).exists() for f in files)
    n_files = len(files) if local else len(PILE_TRAIN_FILES)
    picked, every, offset = shard_plan(n_files, n_shards, shard)
    if local:
        records = _pile_records([files[j] for j in picked], "train", bad, skip_bad)
    else:
        records = _pile_records(source, "train", bad, skip_bad, data_files=[PILE_TRAIN_FILES[j] for j in picked])
    quota = shard_quota(max_train_docs, n_shards, shard)
    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    name = f"{shard:03d}"
    kept, empty, buf, nbytes = 0, [], {"doc_id": [], "task": [], "text": []}, 0
    with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:

        def flush() -> None:
            nonlocal buf, nbytes
            if buf["doc_id"]:
                writer.write_table(pa.table(buf, schema=schema))
            buf, nbytes = {"doc_id": [], "task": [], "text": []}, 0

        for r in records:
            if quota is not None and kept >= quota:
                break
            if r["index"] % every != offset:
                continue
            doc_id = f"train-{name}-{r['index']}"
            if not r["text"].strip():
                empty.append(doc_id)
                continue
            buf["doc_id"].append(doc_id)
            buf["task"].append(r["task"])
            buf["text"].append(r["text"])
            kept, nbytes = kept + 1, nbytes + len(r["text"])
            if len(buf["doc_id"]) >= row_group_rows or nbytes >= row_group_bytes:
                flush()
        flush()
    if empty:
        log.warning("shard %s: dropped %d empty or whitespace-only documents: %s", name, len(empty), empty[:10])
    src = [files[j] for j in picked] if local else [f"{source}:{PILE_TRAIN_FILES[j]}" for j in picked]
    log.info("shard %s: %d documents from %s", name, kept, src)
    return {"shard": name, "files": src, "train_docs": kept, "dropped_empty": {"count": len(empty), "ids": empty[:100]}}
