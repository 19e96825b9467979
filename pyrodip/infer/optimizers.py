"""The optimisers a fit can use, by name (``--optimizer``), and :func:`make_optimizer`, which
builds one over a fit's parameters.

Each entry is a ``torch.optim.Optimizer`` class, built as ``cls(param_groups, lr=...)``; the
fit passes ``weight_decay`` per group. Register your own with
``OPTIMIZERS.register("name", cls)``.

>>> sorted(OPTIMIZERS)
['adam', 'adamw', 'sgd']
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch
from torch import Tensor

from ..registry import Registry

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam", torch.optim.Adam)
OPTIMIZERS.register("adamw", torch.optim.AdamW)
OPTIMIZERS.register("sgd", torch.optim.SGD)

#: Whether :func:`make_optimizer` asks for the optimiser's fused kernel (one kernel over all
#: parameters; Adam, AdamW and SGD have one on CPU and CUDA). Measured in docs/performance.md.
FUSED = True


def make_optimizer(
    parameters: Iterable[tuple[str, Tensor]], optimizer: str, lr: float,
    weight_decay: float = 0.0, capturable: bool = False,
) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over named parameters (``loss_fn.named_parameters()``: the guide's
    and the model's). Weight decay (if any) acts on locations and deterministic parameters,
    never on the guide's scales (pyrodip's ``rhos``, the autoguides' ``scales.*``, ``scale``
    and ``cov_factor``): decaying those would pull the posterior standard
    deviation towards softplus(0) = 0.69. ``capturable``: an optimiser a CUDA graph can
    record (:mod:`pyrodip.infer.capture`), its learning rate a tensor on the parameters' device.

    >>> layer = torch.nn.Linear(2, 1)
    >>> optimizer = make_optimizer(layer.named_parameters(), "adamw", 0.01, weight_decay=0.1)
    >>> [(len(group["params"]), group["weight_decay"]) for group in optimizer.param_groups]
    [(2, 0.1)]
    """
    decay, no_decay = [], []
    for name, param in parameters:
        (no_decay if _is_scale(name) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    cls = OPTIMIZERS[optimizer]
    accepted = inspect.signature(cls).parameters
    options = {"fused": True} if FUSED and "fused" in accepted else {}
    groups = [g for g in groups if g["params"]]
    if capturable:
        options.update({"capturable": True} if "capturable" in accepted else {})
        device = groups[0]["params"][0].device
        for group in groups:  # a tensor each: a graph reads the learning rate by address
            group["lr"] = torch.tensor(lr, device=device)
    return cls(groups, lr=lr, **options)


def _is_scale(name: str) -> bool:
    """Whether the parameter ``name`` holds a guide's spread (pyrodip's or an autoguide's).

    >>> _is_scale("guide.rhos"), _is_scale("guide.scale_unconstrained"), _is_scale("locs.w")
    (True, True, False)
    """
    parts = name.split(".")
    last = parts[-1].removesuffix("_unconstrained")  # a constrained PyroParam's raw value
    return last in ("rhos", "scale", "cov_factor") or "scales" in parts[:-1]
