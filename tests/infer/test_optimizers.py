import pytest
import torch

from pyrodip import RunConfig
from pyrodip.infer import optimizers
from pyrodip.infer.optimizers import OPTIMIZERS, make_optimizer
from pyrodip.run.fit import build_model


def test_weight_decay_spares_the_guide_scales(noisy64):
    config = RunConfig(steps=5, samples=2, optimizer="adamw", weight_decay=0.1)
    model, guide = build_model(config, noisy64)
    loss_fn = torch.nn.Module()
    loss_fn.model, loss_fn.guide = model, guide
    groups = make_optimizer(loss_fn.named_parameters(), "adamw", 0.01, 0.1).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    spared = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert spared == {id(guide.rhos)}
    assert id(guide.locs) in decayed


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_is_built_with_its_learning_rate_and_fused_kernel(name, monkeypatch):
    layer = torch.nn.Linear(3, 2)
    optimizer = make_optimizer(layer.named_parameters(), name, 0.05)
    assert isinstance(optimizer, OPTIMIZERS[name])
    assert [group["lr"] for group in optimizer.param_groups] == [0.05]
    assert optimizer.defaults.get("fused") is True
    monkeypatch.setattr(optimizers, "FUSED", False)
    assert not make_optimizer(layer.named_parameters(), name, 0.05).defaults.get("fused")
