"""Local reparameterisation of the conv layers, as a Pyro effect handler (training only).

Under a mean-field Normal guide, a conv layer's pre-activation b = conv(x, w) + c with
w ~ N(mu, s^2) and c ~ N(m, t^2) is Normal per output pixel:
mean conv(x, mu) + m, variance conv(x^2, s^2) + t^2. Sampling b directly (Kingma et al. 2015)
instead of w gives gradients of lower variance, at the cost of a second convolution.

:class:`LocalReparameterization` does it without touching the model: at every conv weight and
bias site it sets the value to the guide's mean (the closed-form KL of ``TraceMeanField_ELBO``
does not use the value), and a forward hook on each conv adds the noise of the pixel's
variance. Each output pixel then draws independently: the per-pixel variance is right, the
spatial correlation of a weight sample is not, so posterior images are always drawn from weight
samples (:func:`pyrodip.infer.predictive.predict`); this handler is for the training loss only.

>>> import torch
>>> from pyrodip.bayes.model import BayesianDIP
>>> from pyrodip.bayes.guides import make_guide
>>> from pyro.infer import TraceMeanField_ELBO
>>> model = BayesianDIP((1, 32, 32))
>>> guide = make_guide("meanfield", model)
>>> with LocalReparameterization(model, guide):
...     loss = TraceMeanField_ELBO().differentiable_loss(model, guide, torch.rand(1, 1, 32, 32))
"""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger
from torch import nn

from ..errors import InvalidInputError


class LocalReparameterization(Messenger):
    """Within this handler, ``model``'s conv layers sample their outputs, not their weights,
    from ``guide`` (a guide with ``loc(site)`` and ``scale(site)``, e.g. ``meanfield``)."""

    def __init__(self, model, guide) -> None:
        super().__init__()
        if not callable(getattr(guide, "scale", None)):  # autolowrank's is a tensor
            raise InvalidInputError(
                f"local reparameterisation needs a Normal guide with scales (meanfield), "
                f"not {type(guide).__name__}: turn `local_reparam` off"
            )
        self.guide = guide
        self.layers: dict[nn.Conv2d, tuple[str, str | None]] = {}
        for name, module in model.net.named_modules():
            weight, bias = f"net.{name}.weight", f"net.{name}.bias"
            if isinstance(module, nn.Conv2d) and weight in guide.sites:
                self.layers[module] = (weight, bias if bias in guide.sites else None)
        self.sites = {site for pair in self.layers.values() for site in pair if site}
        self._hooks: list = []

    def __enter__(self):
        self._hooks = [layer.register_forward_hook(self._add_noise) for layer in self.layers]
        return super().__enter__()

    def __exit__(self, *args):
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        return super().__exit__(*args)

    def _pyro_post_sample(self, msg) -> None:
        # Outermost, this runs before the traces record the site: both see the mean.
        if msg["name"] in self.sites:
            msg["value"] = self.guide.loc(msg["name"])

    def _add_noise(self, layer: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor):
        weight, bias = self.layers[layer]
        weight_var = self.guide.scale(weight) ** 2
        bias_var = self.guide.scale(bias) ** 2 if bias is not None else None
        variance = layer._conv_forward(inputs[0] ** 2, weight_var, bias_var)
        return output + variance.clamp_min(1e-20).sqrt() * torch.randn_like(output)
