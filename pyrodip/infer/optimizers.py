"""The optimisers a fit can use, by name (``--optimizer``).

Each entry is a ``torch.optim.Optimizer`` class, built as ``cls(param_groups, lr=...)``; the
fit passes ``weight_decay`` per group. Register your own with
``OPTIMIZERS.register("name", cls)``.

>>> sorted(OPTIMIZERS)
['adam', 'adamw', 'sgd']
"""

from __future__ import annotations

import torch

from ..registry import Registry

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam", torch.optim.Adam)
OPTIMIZERS.register("adamw", torch.optim.AdamW)
OPTIMIZERS.register("sgd", torch.optim.SGD)
