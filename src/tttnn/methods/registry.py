"""The method registry: the runner of each baseline and ablation the ``methods`` section enables, by its result
folder's name (``incontext``, ``interpolation``, ``dynamic_eval``, ``order-<order>``, ``index_size-<n>``)."""

from __future__ import annotations

from typing import Any

from tttnn.config import section_name

ABLATIONS = ("order-", "index_size-", "dynamic_eval")
# the methods that never train (their records carry no learning rate)
NO_TRAINING = ("incontext", "interpolation", "interpolation_valid")


def method_runner(method: str, model, tok, cfg, methods: dict[str, Any], retrieve: dict[str, Any]):
    """The runner of one baseline or ablation (see ``methods`` in the config schema)."""
    section = methods.get(section_name(method)) or {}
    if method == "incontext":
        from tttnn.methods.incontext import InContextRunner, InContextSettings

        if section.get("max_length"):
            cfg = cfg.model_copy(update={"max_length": section["max_length"]})
        keys = ("budget", "max_distance", "separator")
        return InContextRunner(model, tok, cfg, InContextSettings(**{k: section[k] for k in keys if k in section}))
    if method in ("interpolation", "interpolation_valid"):
        from tttnn.methods.interpolation import InterpolationRunner, InterpolationSettings

        return InterpolationRunner(model, tok, cfg, InterpolationSettings(**section))
    if method == "dynamic_eval":
        from tttnn.methods.dynamic_eval import DynamicEvalRunner, DynamicEvalSettings

        cap = section.get("split_max_tokens", retrieve.get("split_max_tokens", 1024))
        return DynamicEvalRunner(model, tok, cfg, DynamicEvalSettings(max_tokens=cap, steps=section.get("steps")))
    if method.startswith("order-"):
        from tttnn.methods.order import OrderRunner, OrderSettings

        order = method.removeprefix("order-")
        settings = OrderSettings(
            order=order, batch_size=section.get("batch_size", 5), shuffle=section.get("shuffle", True)
        )
        return OrderRunner(model, tok, cfg, settings)
    if method.startswith("index_size-"):
        from tttnn.core.ttt import TTTRunner

        return TTTRunner(model, tok, cfg)
    raise ValueError(f"unknown method {method!r}")
