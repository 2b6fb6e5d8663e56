"""Settings that cannot work fail before any work, naming the key: k against the index, duplicate tasks,
index-size fractions, lengths against the model's positions, methods.k against retrieve.k."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from test_workflow import REPO, snakemake

from tttnn.config import ConfigError, check_config, check_lengths, max_index_chunks


def _test_config(**changes) -> dict:
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    for dotted, value in changes.items():
        node = cfg
        *path, last = dotted.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return cfg


@pytest.mark.parametrize(
    "changes, message",
    [
        # 12 documents per task x 2 tasks x ceil(1200 / 64) windows = 456 chunks at most
        ({"retrieve.k": 100000}, "retrieve.k = 100000, but the corpus settings allow at most 456 chunks"),
        ({"corpus.tasks": ["github", "github"]}, "corpus.tasks: ['github'] listed more than once"),
        ({"corpus.n_shards": 1}, "methods.index_size.fractions: 0.5 of corpus.n_shards = 1 selects no shard"),
        ({"methods.index_size": {"fractions": [0.9]}}, "selects every shard"),
        ({"methods.k": 10}, "methods.k = 10 exceeds retrieve.k = 3"),
    ],
)
def test_dry_run_refuses_naming_the_keys(tmp_path, changes, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_test_config(**changes)))
    out = snakemake("-n", "figures", "--configfile", str(path), check=False)
    assert out.returncode != 0 and message in out.stdout + out.stderr, out.stderr[-3000:]


def test_index_bound_is_an_upper_bound_of_what_is_built():
    cfg = _test_config()
    assert max_index_chunks(cfg) == 12 * 2 * 19
    assert max_index_chunks({**cfg, "corpus": {**cfg["corpus"], "max_train_docs": None}}) is None


def test_dynamic_eval_waits_for_the_k_check():
    # the one method that takes k steps without reading the neighbours depends on the k-against-index check
    target = "results/.test/baselines/test/smollm2-135m/dynamic_eval/github.jsonl"
    out = snakemake("-n", target, "--forceall", "--configfile", ".test/config.yaml", "--quiet", "rules")
    text = out.stdout + out.stderr
    assert "check_k" in text and "dynamic_eval" in text


def test_check_k_names_both_numbers(tmp_path):
    from tttnn.steps import check_k_fits

    paths = []
    for i, n in enumerate([3, 4]):
        p = tmp_path / f"{i}.parquet"
        pd.DataFrame({"chunk_id": [f"c{j}" for j in range(n)]}).to_parquet(p)
        paths.append(str(p))
    with pytest.raises(ValueError, match="retrieve.k = 8, but the index holds only 7 chunks in 2 shards"):
        check_k_fits(paths, 8, str(tmp_path / "ok"))
    assert not (tmp_path / "ok").exists()
    check_k_fits(paths, 7, str(tmp_path / "ok"))
    assert (tmp_path / "ok").is_file()


def test_lengths_are_checked_against_the_model_positions(tmp_path, tiny_model_dir):
    cfg = _test_config(**{"ttt.max_length": 100000})
    cfg["models"] = {"tiny": {"path": str(tiny_model_dir)}}
    with pytest.raises(ConfigError, match=r"ttt.max_length \(model tiny\) = 100000 exceeds model tiny's 128 positions"):
        check_lengths(cfg, "tiny", 128)
    cfg = _test_config(**{"methods.incontext": {"budget": 100}})
    cfg["models"] = {"tiny": {"path": str(tiny_model_dir)}}
    with pytest.raises(ConfigError, match=r"methods.incontext.budget \+ window \(100 \+ 64\) = 164"):
        check_lengths(cfg, "tiny", 128)
    check_lengths(cfg, "tiny", 164)  # fits exactly


def test_prepare_model_fails_first_naming_the_length(tmp_path, tiny_model_dir):
    from tttnn.runs import prepare_model

    cfg = _test_config(**{"ttt.max_length": 100000})
    cfg["models"] = {"tiny": {"path": str(tiny_model_dir)}}
    out = tmp_path / "models/tiny"
    with pytest.raises(ConfigError, match="ttt.max_length .* = 100000 exceeds model tiny's 128 positions"):
        prepare_model(str(tiny_model_dir), str(out), config=cfg, model="tiny")
    assert not out.exists()  # nothing written that could look finished
    # once prepared, the parse-time check knows the limit and refuses before any job
    cfg["ttt"]["max_length"] = 64
    prepare_model(str(tiny_model_dir), str(out), config=cfg, model="tiny")
    cfg["ttt"]["max_length"] = 100000
    cfg["resources_dir"] = str(tmp_path)
    with pytest.raises(ConfigError, match="exceeds model tiny's 128 positions"):
        check_config(cfg)


def test_empty_ablation_tables_keep_their_header_and_figures_say_so(tmp_path):
    from tttnn.report.compare import index_size_table, order_table
    from tttnn.report.plots import index_size_figure, order_figure

    sizes, distances = index_size_table({}, n_shards=2)
    order = order_table({})
    for name, df in {"sizes": sizes, "distances": distances, "order": order}.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)
        back = pd.read_csv(tmp_path / f"{name}.csv")  # an empty file would raise EmptyDataError here
        assert back.empty and len(back.columns) >= 5
    fig = order_figure(order)
    assert "nothing to draw" in fig.axes[0].texts[0].get_text()
    fig = index_size_figure(sizes, distances)
    assert "nothing to draw" in fig.axes[0].texts[0].get_text()
