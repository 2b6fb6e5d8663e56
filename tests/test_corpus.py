"""Corpus sources: the mini-Pile is deterministic and leak-free; Pile-format files are read and sampled."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tttnn.data.corpus import build_pile, pile_slug, shard_names, write_shards
from tttnn.data.minipile import build_minipile

SMALL = dict(
    n_test_docs=2, max_train_docs=25, math_problems_per_doc=8, min_chars=150, max_chars=1500, test_max_chars=800
)


def test_minipile_is_deterministic_and_holds_out_test_docs(tmp_path):
    paths = []
    for run in ("a", "b"):
        train, test = build_minipile(**SMALL)
        out_train = [str(tmp_path / run / f"train/{s}.parquet") for s in shard_names(2)]
        out_test = {t: str(tmp_path / run / f"test/{t}.parquet") for t in test.task.unique()}
        write_shards(train, test, out_train, out_test)
        paths.append(out_train + list(out_test.values()))
    for a, b in zip(*paths):
        assert open(a, "rb").read() == open(b, "rb").read(), a
    assert set(test.task) == {"github", "dm-math", "freelaw", "stackexchange"}
    assert test.groupby("task").size().eq(2).all()
    assert not set(test.text) & set(train.text)
    assert not set(test.doc_id) & set(train.doc_id)
    assert train.text.is_unique
    assert (test.text.str.len() <= 800).all()
    shards = [pd.read_parquet(p) for p in paths[0][:2]]
    assert sum(len(s) for s in shards) == len(train)


def test_minipile_rejects_unknown_task():
    with pytest.raises(ValueError, match="corpus.tasks"):
        build_minipile(tasks=["github", "pubmed-central"], **SMALL)


def _pile_file(path, rows):
    with open(path, "w") as fh:
        for text, name in rows:
            fh.write(json.dumps({"text": text, "meta": {"pile_set_name": name}}) + "\n")


def test_pile_local_files_sampled_per_task(tmp_path):
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    _pile_file(train, [(f"train doc {i}", "Github" if i % 2 else "EuroParl") for i in range(20)])
    _pile_file(test, [(f"test doc {i}", ["Github", "EuroParl", "USPTO Backgrounds"][i % 3]) for i in range(60)])
    tr, te = build_pile(str(train), str(test), ["github", "europarl"], n_test_docs=5, max_train_docs=12)
    assert len(tr) == 12 and set(tr.task) == {"github", "europarl"}
    assert te.groupby("task").size().to_dict() == {"europarl": 5, "github": 5}
    tr2, te2 = build_pile(str(train), str(test), ["github", "europarl"], n_test_docs=5, max_train_docs=12)
    assert te.equals(te2)  # seeded sample
    _, te3 = build_pile(str(train), str(test), ["github", "europarl"], 5, 12, seed=7)
    assert not te.equals(te3)
    with pytest.raises(ValueError, match="no test documents of task 'enron'"):
        build_pile(str(train), str(test), ["enron"], 5, 12)
    with pytest.raises(FileNotFoundError):
        build_pile(str(tmp_path / "missing.jsonl"), str(test), ["github"], 5, 12)


def test_pile_slugs():
    assert pile_slug("USPTO Backgrounds") == "uspto"
    assert pile_slug("Gutenberg (PG-19)") == "gutenberg"
    with pytest.raises(ValueError):
        pile_slug("Nonexistent Set")
