"""Shared fixtures: a tiny random GPT-2 with a locally trained byte-level BPE tokenizer (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SAMPLE_TEXTS = [
    "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n",
    "The quick brown fox jumps over the lazy dog. Permission is hereby granted, free of charge.",
    "What is 12 + 30? Answer: 42. Solve 3*x + 2 = 11 for x. Answer: 3.",
    "import os\nimport sys\n\nfor i in range(10):\n    print(i * i)\n",
    "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.",
]


def make_tiny_gpt2(out: Path, n_positions: int = 128, seed: int = 0) -> Path:
    """Save a 2-layer, 64-dim random GPT-2 and a byte-level BPE tokenizer trained on a few strings."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SAMPLE_TEXTS * 4, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", model_max_length=n_positions
    )
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from tttnn.models.load import load_model

    return load_model(str(tiny_model_dir), device="cpu")


# Special tokens of each family's real tokenizer (the rule being tested: which one predicts the first token).
FAMILY_SPECIALS = {
    "gemma3": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "add_bos": True},
    "qwen2": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos": False},
    "llama": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": None, "add_bos": True},
}


def make_tiny_family(family: str, out: Path, max_positions: int = 128, seed: int = 0) -> Path:
    """Save a 2-layer random ``gemma3``/``qwen2``/``llama`` causal LM and a tokenizer with that family's specials.

    The tokenizer is a byte-level BPE trained on :data:`SAMPLE_TEXTS`; like the real ones, the Gemma and
    Llama tokenizers add their bos token when asked for special tokens, Qwen's adds nothing.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    sp = FAMILY_SPECIALS[family]
    specials = [t for t in (sp["bos_token"], sp["eos_token"], sp["pad_token"]) if t]
    if family == "qwen2":
        specials.append("<|im_start|>")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SAMPLE_TEXTS * 4, vocab_size=420, min_frequency=1, special_tokens=specials)
    if sp["add_bos"]:
        bos = sp["bos_token"]
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bpe.token_to_id(bos))]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=sp["bos_token"],
        eos_token=sp["eos_token"],
        pad_token=sp["pad_token"],
        model_max_length=max_positions,
    )
    common = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    if family == "gemma3":
        # a sliding window shorter than the test windows, as in the real model's local layers
        cfg = Gemma3TextConfig(
            **common, head_dim=32, sliding_window=16, layer_types=["sliding_attention", "full_attention"]
        )
        model = Gemma3ForCausalLM(cfg)
    elif family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        raise ValueError(f"unknown family {family!r}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
