"""The proxy model: a small causal LM of `transformers`' own classes, from a tiny config.

By default a ``LlamaConfig`` of 4 layers, width 256, 4 heads, MLP 768 and tied embeddings:
3.4 M parameters in the layers plus 256 per vocabulary entry (5.5 M with an 8,192-token
vocabulary). ``--model-config FILE`` takes any ``config.json`` of a causal LM `transformers`
knows (its ``model_type`` names the class); its vocabulary must hold the tokenizer's ids and its
positions the context length. Every run of a comparison builds the model from the same config
and seed, so they start from the same weights; the model is saved with ``save_pretrained``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

#: the default proxy architecture (a LlamaConfig; vocab_size and max_position_embeddings come from the run)
DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
    "attention_dropout": 0.0,
    "hidden_act": "silu",
}


def model_config(vocab_size: int, context: int, path: str | os.PathLike | None = None,
                 architecture: dict | None = None):
    """The ``transformers`` config of the proxy: ``path`` (a ``config.json`` file or a directory holding one),
    else ``architecture`` (default :data:`DEFAULT_ARCHITECTURE`), with the tokenizer's vocabulary and the
    context length filled in where the file leaves them out (and checked where it gives them)."""
    from transformers import AutoConfig

    values, where = _architecture(path, architecture)
    model_type = values.pop("model_type", None)
    if not isinstance(model_type, str):
        raise InputError(f"{where}: no model_type; name the architecture, e.g. \"model_type\": \"llama\"")
    values.setdefault("vocab_size", int(vocab_size))
    values.setdefault("max_position_embeddings", int(context))
    try:
        config = AutoConfig.for_model(model_type, **values)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{where}: {_first(e)}; give a config.json of a transformers causal LM") from None
    if int(getattr(config, "vocab_size", 0) or 0) < vocab_size:
        raise InputError(f"{where}: vocab_size {config.vocab_size} is smaller than the tokenizer's {vocab_size} ids; "
                         f"raise it or leave it out")
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and int(positions) < context:
        raise InputError(f"{where}: max_position_embeddings {positions} is below the context length {context}; "
                         f"raise it or lower --context")
    config.use_cache = False
    return config


def _architecture(path, architecture: dict | None) -> tuple[dict, str]:
    if path is None:
        return dict(DEFAULT_ARCHITECTURE if architecture is None else architecture), "the default proxy config"
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    where = f"--model-config {p}"
    if not p.is_file():
        raise InputError(f"{where}: no such file; give a transformers config.json (or a directory holding one)")
    try:
        values = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{where}: not JSON ({_first(e)}); give a transformers config.json") from None
    if not isinstance(values, dict):
        raise InputError(f"{where}: must be a JSON object (a transformers config.json)")
    return values, where


def _first(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:200]


def build_model(config, seed: int):
    """The proxy, initialised from ``seed`` on the CPU in float32 (the same weights on any device), SDPA
    attention where the class has it. A one-line error for a config that is not a causal LM."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        except ValueError:
            try:
                model = AutoModelForCausalLM.from_config(config)
            except ValueError as e:
                raise InputError(f"--model-config: {type(config).__name__} is not a causal LM transformers can build "
                                 f"({_first(e)}); give one of AutoModelForCausalLM's configs") from None
    return model.float()


def parameter_counts(model) -> dict[str, int]:
    """``total`` parameters and ``matmul``: those a token's forward pass multiplies with (all but an input
    embedding table that is not also the output layer) — the N of the 6·N·tokens rule."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    return {"total": int(total), "matmul": int(total - (0 if tied else embedding.numel()))}
