"""Resumable per-document results shared by TTT and every baseline: one JSONL line per finished document,
each carrying a fingerprint of everything that determined it, so a resumed run never mixes settings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tttnn import jsonl
from tttnn.io import write_text

log = logging.getLogger(__name__)

MANIFEST = "tttnn-manifest.json"


@dataclass
class Document:
    """A test document to run: its id, the text evaluated, its neighbours, extra fields to record."""

    doc_id: str
    text: str
    neighbors: list = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class PerDocument:
    """``run_batch`` for runners that take one document at a time through ``run_document``."""

    def run_batch(self, docs: Sequence[Document]) -> list[dict[str, Any]]:
        """One record per document, in order."""
        return [self.run_document(d.doc_id, d.text, d.neighbors) for d in docs]  # type: ignore[attr-defined]


def table_digest(path: str | os.PathLike) -> str:
    """sha256 of a parquet table's content without its timing columns (``*_seconds``), so a rerun of the
    retrieval that found the same neighbours, only at another speed, does not restart the tasks that use it."""
    import pandas as pd

    df = pd.read_parquet(path)
    df = df.drop(columns=[c for c in df.columns if str(c).endswith("seconds")])
    h = hashlib.sha256(json.dumps([str(c) for c in df.columns]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (of a parquet table, its content less timings), or of a directory: its
    manifest when it has one, else every file in it."""
    p = Path(path)
    h = hashlib.sha256()
    if p.suffix == ".parquet":
        return table_digest(p)
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return hashlib.sha256((p / MANIFEST).read_bytes()).hexdigest()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + file_digest(f).encode())
        return h.hexdigest()
    with open(p, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: str | os.PathLike) -> None:
    """Record the sha256 of every file in a prepared model directory, so fingerprints need not rehash GBs."""
    d = Path(directory)
    files = {str(f.relative_to(d)): file_digest(f) for f in sorted(d.rglob("*")) if f.is_file() and f.name != MANIFEST}
    (d / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True))


class CorruptModelError(RuntimeError):
    """A prepared (or fetched) model folder whose files differ from its manifest."""


def _stamp_path(d: Path) -> Path:
    # beside the folder, not in it: a file written inside a Snakemake directory() output would make it newer
    return d.parent / f".{d.name}.verified.json"


def _state_key(d: Path) -> dict[str, Any]:
    """The manifest's digest and every listed file's size and modification time (what the stamp records)."""
    man = d / MANIFEST
    files = {}
    for name in sorted(json.loads(man.read_text())):
        st = (d / name).stat()
        files[name] = [st.st_size, st.st_mtime_ns]
    return {"manifest": hashlib.sha256(man.read_bytes()).hexdigest(), "files": files}


def stamp_verified(directory: str | os.PathLike) -> None:
    """Record a folder as matching its manifest (just written, so nothing to hash): its first load skips hashing."""
    d = Path(directory)
    stamp = _stamp_path(d)
    try:
        write_text(json.dumps(_state_key(d)), stamp)
    except OSError as err:  # a read-only resources folder: verified, but hashed again next time
        log.warning("could not write %s: %s", stamp, err)


def verify_manifest(directory: str | os.PathLike) -> None:
    """Check a model folder against the manifest written when it was prepared: every file present, then its
    sha256, hashed once per state of the folder (a stamp beside it records the files' sizes and times).
    A mismatch raises :class:`CorruptModelError` naming the file and saying to delete the folder."""
    d = Path(directory)
    man = d / MANIFEST
    if not man.is_file():
        return  # a plain local model folder of the user's: nothing to check against
    want: dict[str, str] = json.loads(man.read_text())
    fix = f"delete {d} so that it is prepared (or fetched) again"
    for name in sorted(want):
        if not (d / name).is_file():
            raise CorruptModelError(f"{d / name}: listed in {man} but missing; {fix}")
    try:
        if json.loads(_stamp_path(d).read_text()) == _state_key(d):
            return
    except (OSError, ValueError):
        pass
    for name, digest in want.items():
        if file_digest(d / name) != digest:
            raise CorruptModelError(f"{d / name}: its sha256 differs from {man} (the file was changed or damaged); {fix}")
    stamp_verified(d)


def provenance(settings: Mapping[str, Any], files: Mapping[str, str | os.PathLike | None]) -> dict[str, Any]:
    """What determines a result: the method's settings and the digests of its input files."""
    return {
        "settings": json.loads(json.dumps(dict(settings), sort_keys=True, default=str)),
        "files": {k: file_digest(v) for k, v in sorted(files.items()) if v},
    }


def fingerprint_of(prov: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(prov, sort_keys=True).encode()).hexdigest()[:16]


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Human-readable list of what differs between two provenances (settings keys and input files)."""
    parts = []
    for section in ("settings", "files"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                parts.append(
                    f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}" if section == "settings" else f"file {key}"
                )
    return ", ".join(parts) or "unknown (records without provenance)"


def _set_aside(partial: Path, reason: str) -> Path:
    stale = partial.with_name(f"{partial.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(partial, stale)
    log.warning("%s was written with other settings (%s): moved to %s; the task starts over", partial, reason, stale)
    return stale


def run_task(
    documents: Iterable[Document],
    out_path: str | os.PathLike,
    process: Callable[[list[Document]], list[dict[str, Any]]],
    prov: Mapping[str, Any] | None = None,
    batch_size: int = 1,
    partial_path: str | os.PathLike | None = None,
    progress: bool = True,
    on_document: Callable[[dict[str, Any]], None] | None = None,
    resume_warning: str | None = None,
    finalize: bool = True,
    reuse: Sequence[str | os.PathLike] = (),
) -> list[dict[str, Any]]:
    """Run ``process`` over every document (``batch_size`` at a time), one JSONL line each as it finishes.

    Lines go to ``partial_path`` (default ``<out>.partial``), which is renamed to ``out_path`` when every
    document is done, so an existing ``out_path`` is always complete. Documents already in the partial file
    with the same fingerprint are skipped (resume); a partial file with another fingerprint is set aside.
    Records with the same fingerprint in the ``reuse`` files (a block job: the task's file and other blocks)
    are taken as done too. The finished file lists the documents in their order, whatever order they ran in.
    """
    docs = list(documents)
    ids = [d.doc_id for d in docs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{out_path}: duplicate document ids in the task's test set")
    prov = dict(prov or {"settings": {}, "files": {}})
    fp = fingerprint_of(prov)
    partial = Path(partial_path) if partial_path else Path(f"{out_path}.partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    old = jsonl.read_records(partial, repair=True)
    stale = [r for r in old if r.get("fingerprint") != fp]
    if stale:
        _set_aside(partial, describe_change(stale[0].get("provenance", {}), prov))
        old = []
    done = {r["doc_id"]: r for r in old}
    unknown = set(done) - set(ids)
    if unknown:
        _set_aside(partial, f"documents not in this task, e.g. {sorted(unknown)[:3]}")
        done = {}
    if reuse:
        found = reusable_records(reuse, fp, [i for i in ids if i not in done])
        for i in ids:
            if i in found:
                jsonl.append_record(partial, found[i])
                done[i] = found[i]
        if found:
            log.info("%d documents' records reused from %s", len(found), ", ".join(map(str, reuse)))
    partial.touch()  # a block without documents still publishes its (empty) file
    todo = [d for d in docs if d.doc_id not in done]
    if done:
        log.info("resuming: %d of %d documents already done in %s", len(done), len(docs), partial)
        if resume_warning:
            log.warning(resume_warning)
    bar = tqdm(total=len(todo), desc=f"{Path(out_path).parent.name}/{Path(out_path).stem}", disable=not progress)
    for i in range(0, len(todo), max(1, batch_size)):
        batch = todo[i : i + max(1, batch_size)]
        recs = process(batch)
        if len(recs) != len(batch):
            raise RuntimeError(f"{out_path}: {len(batch)} documents processed but {len(recs)} records returned")
        for d, rec in zip(batch, recs):
            rec = {**rec, **d.extra, "doc_id": d.doc_id, "fingerprint": fp, "provenance": prov}
            jsonl.append_record(partial, rec)
            done[d.doc_id] = rec
            bar.update(1)
            if on_document:
                on_document(rec)
    bar.close()
    missing = [i for i in ids if i not in done]
    if missing:  # cannot happen unless the file was edited concurrently; never drop silently
        raise RuntimeError(f"{out_path}: documents without results: {missing}")
    _in_document_order(partial, ids)
    if finalize:
        os.replace(partial, out_path)
    return [done[i] for i in ids]


def reusable_records(paths: Sequence[str | os.PathLike], fingerprint: str, ids: Sequence[str]) -> dict[str, dict]:
    """Records of ``ids`` with ``fingerprint`` (computed under the same settings and inputs) found in ``paths``."""
    want, found = set(ids), {}
    for p in paths:
        for rec in jsonl.read_records(p):
            if rec.get("fingerprint") == fingerprint and rec.get("doc_id") in want:
                found.setdefault(rec["doc_id"], rec)
    return found


def _in_document_order(path: Path, ids: Sequence[str]) -> None:
    """Rewrite a finished partial file with its lines in document order (reused records came first), each line's
    bytes unchanged, so the file equals one uninterrupted run's."""
    lines = path.read_bytes().splitlines(keepends=True)
    by_id = {json.loads(ln)["doc_id"]: ln for ln in lines}
    if len(lines) == len(by_id) and list(by_id) == list(ids):
        return
    from tttnn.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(by_id[i] for i in ids))


def finalize(out_paths: Sequence[str | os.PathLike]) -> None:
    """Rename every ``<out>.partial`` to ``<out>`` once a multi-file job has finished all of them."""
    for out in out_paths:
        os.replace(f"{out}.partial", out)


def check_consistent(records: Sequence[Mapping[str, Any]], where: str) -> None:
    """Refuse results of one task whose fingerprints differ (they were computed under different settings)."""
    fps = {r.get("fingerprint") for r in records}
    if len(fps) > 1:
        first = records[0]
        other = next(r for r in records if r.get("fingerprint") != first.get("fingerprint"))
        change = describe_change(first.get("provenance", {}), other.get("provenance", {}))
        raise ValueError(f"{where}: records computed under different settings ({change}); delete the file and rerun")
