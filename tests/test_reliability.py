"""Results never mix settings, k is checked against the index, bad input names its file and line."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from tttnn import jsonl
from tttnn.core.resume import Document, provenance, run_task
from tttnn.data.corpus import build_pile
from tttnn.report.summarize import load_results
from tttnn.steps import build_corpus, merge_shards


class Killed(Exception):
    pass


def _fake_process(lr: float, calls: list[str]):
    """A stand-in method whose result depends on its setting, so mixed records would be visible."""

    def process(docs):
        calls.extend(d.doc_id for d in docs)
        return [{"checkpoints": [0], "loglik": [-lr * len(d.text)], "n_bytes": len(d.text), "n_words": 1} for d in docs]

    return process


DOCS = [Document(f"d{i}", "x" * (10 + i)) for i in range(4)]


def _run(tmp_path, lr, calls, kill_after=None):
    def on_document(rec):
        if kill_after is not None and len(calls) >= kill_after:
            raise Killed

    prov = provenance({"lr": lr}, {})
    return run_task(DOCS, tmp_path / "t.jsonl", _fake_process(lr, calls), prov, progress=False, on_document=on_document)


def test_resume_with_other_settings_starts_over(tmp_path):
    calls: list[str] = []
    with pytest.raises(Killed):
        _run(tmp_path, 1e-4, calls, kill_after=2)
    assert len(jsonl.read_records(tmp_path / "t.jsonl.partial")) == 2
    calls.clear()
    recs = _run(tmp_path, 2e-5, calls)
    assert calls == ["d0", "d1", "d2", "d3"]  # nothing of the first lr was reused
    assert all(r["provenance"]["settings"]["lr"] == 2e-5 for r in recs)
    assert [r["loglik"][0] for r in recs] == [-2e-5 * (10 + i) for i in range(4)]
    stale = list(tmp_path.glob("t.jsonl.partial.stale-*"))
    assert len(stale) == 1 and len(jsonl.read_records(stale[0])) == 2


def test_resume_with_same_settings_continues(tmp_path):
    calls: list[str] = []
    with pytest.raises(Killed):
        _run(tmp_path, 1e-4, calls, kill_after=2)
    calls.clear()
    recs = _run(tmp_path, 1e-4, calls)
    assert calls == ["d2", "d3"]
    assert [r["doc_id"] for r in recs] == ["d0", "d1", "d2", "d3"]
    assert not list(tmp_path.glob("*.stale-*"))


def test_neighbours_fingerprint_ignores_search_time_only(tmp_path):
    nb = pd.DataFrame({"query_id": ["d0", "d0"], "rank": [0, 1], "text": ["a", "b"], "search_seconds": [0.1, 0.1]})
    nb.to_parquet(tmp_path / "a.parquet")
    nb.assign(search_seconds=[9.0, 9.0]).to_parquet(tmp_path / "b.parquet")  # the same search, slower
    nb.assign(text=["a", "c"]).to_parquet(tmp_path / "c.parquet")  # another neighbour
    digest = {n: provenance({}, {"neighbors": tmp_path / f"{n}.parquet"})["files"]["neighbors"] for n in "abc"}
    assert digest["a"] == digest["b"] != digest["c"]


def test_summary_refuses_mixed_settings(tmp_path):
    a = _run(tmp_path, 1e-4, [])
    b = run_task(DOCS[:1], tmp_path / "u.jsonl", _fake_process(2e-5, []), provenance({"lr": 2e-5}, {}), progress=False)
    path = tmp_path / "ttt/run/m/github.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in a[1:] + b))
    with pytest.raises(ValueError, match=r"different settings \(settings.lr: 0.0001 -> 2e-05\)"):
        load_results([str(path)])


def _neighbors(tmp_path, n_chunks):
    parts, chunks = [], []
    for s in range(2):
        c = pd.DataFrame({"chunk_id": [f"c{s}-{i}" for i in range(n_chunks)], "text": ["t"] * n_chunks})
        chunks.append(tmp_path / f"chunks{s}.parquet")
        c.to_parquet(chunks[-1])
        nb = pd.DataFrame(
            {
                "query_id": ["q"] * n_chunks,
                "rank": range(n_chunks),
                "chunk_id": c["chunk_id"],
                "doc_id": "d",
                "distance": [0.1 * i + s for i in range(n_chunks)],
                "shard": f"00{s}",
                "text": "t",
                "search_seconds": 0.0,
            }
        )
        parts.append(tmp_path / f"part{s}.parquet")
        nb.to_parquet(parts[-1])
    test = tmp_path / "test.parquet"
    pd.DataFrame({"doc_id": ["q"], "task": ["github"], "text": ["query"]}).to_parquet(test)
    return parts, test, chunks


def test_k_larger_than_the_index_fails_naming_both_numbers(tmp_path):
    parts, test, chunks = _neighbors(tmp_path, 3)
    with pytest.raises(ValueError, match=r"retrieve.k = 100000, but the index holds only 6 chunks in 2 shards"):
        merge_shards(parts, test, tmp_path / "out.parquet", 100000, chunks)
    assert not (tmp_path / "out.parquet").exists()
    merge_shards(parts, test, tmp_path / "out.parquet", 6, chunks)
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 6


def _pile_line(text, name="Github"):
    return (json.dumps({"text": text, "meta": {"pile_set_name": name}}) + "\n").encode()


def test_bad_utf8_names_file_and_line(tmp_path):
    f = tmp_path / "pile.jsonl"
    f.write_bytes(_pile_line("def f(): pass") + _pile_line("ok") + b'{"text": "caf\xe9", "meta": {}}\n')
    with pytest.raises(ValueError, match=rf"{f}:3: UnicodeDecodeError"):
        build_pile(str(f), str(f), ["github"], 1, None)
    good = tmp_path / "test.jsonl"
    good.write_bytes(_pile_line("x = 1"))
    bad: list[str] = []
    train, test = build_pile(str(f), str(good), ["github"], 1, None, bad=bad, skip_bad=True)
    assert len(train) == 2 and len(bad) == 1 and bad[0].startswith(f"{f}:3:")


def test_empty_documents_are_caught_when_the_corpus_is_built(tmp_path):
    f = tmp_path / "pile.jsonl"
    f.write_bytes(b"".join(_pile_line(t) for t in ["def f(): pass", "   \n ", "x = 1", "", "y = 2"]))
    corpus = {
        "source": "pile",
        "tasks": ["github"],
        "n_test_docs": 10,
        "n_valid_docs": 0,
        "max_train_docs": None,
        "seed": 0,
        "pile": {"train": str(f), "test": str(f)},
    }
    out = tmp_path / "out"
    build_corpus(corpus, [str(out / "train/000.parquet")], [str(out / "test/github.parquet")], (), str(out / "m.json"))
    test = pd.read_parquet(out / "test/github.parquet")
    assert len(test) == 3 and test["text"].str.strip().ne("").all()
    manifest = json.loads((out / "m.json").read_text())
    assert len(manifest["dropped_empty"]["train"]) == 2 and manifest["test_docs"] == {"github": 3}
    # the empty test documents passed over while sampling are counted too, per task
    assert manifest["dropped_empty"]["test_skipped_in_sampling"] == {"github": 2}


def test_tables_carry_a_short_document_forward():
    from tttnn.report.summarize import aligned_logliks, summarize

    recs = [
        {"doc_id": "a", "checkpoints": [0, 1, 2, 3], "loglik": [-100.0, -90.0, -80.0, -70.0], "n_bytes": 100},
        {"doc_id": "b", "checkpoints": [0, 1], "loglik": [-50.0, -40.0], "n_bytes": 50},  # one neighbour only
    ]
    cps, ll = aligned_logliks(recs)
    assert cps == [0, 1, 2, 3] and ll[1].tolist() == [-50.0, -40.0, -40.0, -40.0]
    for r in recs:
        r.update(
            model="m",
            task="github",
            n_words=1,
            seconds={"train": [], "eval": [0.0], "reset": 0.0},
            train_tokens=[],
            n_tokens=1,
        )
    _, curves, _ = summarize(recs, bootstrap=10)
    at3 = curves[(curves.task == "github") & (curves.n_neighbors == 3)].iloc[0]
    assert at3.bits_per_byte == pytest.approx(110 / (150 * math.log(2)))
