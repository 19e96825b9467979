"""Weight priors: declared by name (``"normal:0.05"``), with a scale that can change in place.

Every prior is zero-centred and i.i.d. over the weights of a site. Its spec is
``NAME:SCALE[:ARG...]``: the name, the scale, then the prior's optional arguments in order.

=======================================  ==================================================
spec                                     every weight ~
=======================================  ==================================================
``normal:SCALE``                         N(0, SCALE^2) (the paper's prior)
``fanin:SCALE``                          N(0, SCALE^2 / fan_in): fan_in = the product of all
                                         but the first dimension of the site (a conv weight's
                                         in_channels x kernel area); 1 for a bias or any 1-D
                                         site, whose std is SCALE itself
``laplace:SCALE``                        Laplace(0, b = SCALE)
``studentt:SCALE[:DF]``                  Student's t with DF degrees of freedom (default 3),
                                         scale SCALE
``mixture:SCALE[:PI[:RATIO]]``           PI N(0, SCALE^2) + (1 - PI) N(0, (SCALE / RATIO)^2)
                                         (defaults PI = 0.5, RATIO = 10): a scale mixture
=======================================  ==================================================

A prior is a small ``nn.Module`` holding its numbers as buffers, so it moves with the model to
the GPU and a Bayesian-optimisation loop can set ``prior.scale = 0.1`` between fits without
rebuilding anything: every sample site reads the scale when it is drawn (for ``mixture`` both
component scales follow, their ratio fixed).

>>> prior = make_prior("normal:0.05")
>>> prior.distribution((2, 3)).batch_shape
torch.Size([2, 3])
>>> prior.scale = 0.1
>>> round(float(prior.distribution((1,)).scale), 6)
0.1
>>> make_prior("studentt:0.05").spec()
'studentt:0.05:3'

Against the mean-field guide, ``normal``, ``fanin`` and ``laplace`` have a closed-form KL
(registered in PyTorch); for ``studentt`` and ``mixture`` ``TraceMeanField_ELBO`` falls back to
a one-sample Monte Carlo estimate of it (unbiased, but noisy).

Add your own with ``PRIORS.register`` (:data:`PRIORS` is a :class:`~pyrodip.registry.Registry`;
``register_prior`` is the same decorator): a prior is a zero-centred scale family, so a subclass
defines :meth:`Prior.family` (the distribution of a weight for a tensor of scales); the names
in ``arguments`` are the numbers the spec may give after SCALE, passed to ``__init__`` after
the scale::

    @PRIORS.register("gennormal")
    class GenNormalPrior(Prior):
        arguments = ("BETA",)

        def __init__(self, scale, beta=2.0):
            super().__init__(scale)
            self.beta = beta

        def family(self, scale):
            ...
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from ..registry import Registry
from ..validation import positive

PRIORS: Registry[type[Prior]] = Registry("prior")
"""Prior classes by name: ``@PRIORS.register("name")`` on a :class:`Prior` subclass."""


def register_prior(name: str) -> Callable[[type[Prior]], type[Prior]]:
    """Class decorator that makes a :class:`Prior` subclass available by ``name``: the same as
    ``PRIORS.register(name)``, kept as public API (``pyrodip.register_prior``)."""
    return PRIORS.register(name)


class Prior(nn.Module):
    """A zero-centred i.i.d. prior over each weight, with a positive ``scale``.

    Subclasses implement :meth:`distribution`, returning a distribution of batch shape
    ``shape`` (the caller declares the event dimensions). A subclass with more numbers lists
    their names in ``arguments``, takes them after ``scale`` in ``__init__`` and keeps each as
    an attribute of the same name in lower case (for :meth:`spec`).
    """

    arguments: tuple[str, ...] = ()

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.register_buffer("_scale", torch.tensor(positive("prior scale", scale)))

    @property
    def scale(self) -> float:
        return float(self._scale)

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale.fill_(positive("prior scale", value))

    def family(self, scale: Tensor) -> dist.Distribution:
        """The zero-centred distribution of a weight whose scale is ``scale`` (a tensor, one
        scale per weight or a scalar): what a subclass defines."""
        raise NotImplementedError

    def factor(self, shape: torch.Size) -> float:
        """How much the scale of a weight of a site shaped ``shape`` differs from
        :attr:`scale` (1 unless the prior depends on the site's shape)."""
        return 1.0

    def distribution(self, shape: torch.Size | tuple[int, ...]) -> dist.Distribution:
        """The prior of every weight of a site shaped ``shape`` (batch shape ``shape``)."""
        shape = torch.Size(shape)
        return self.family(self._scale * self.factor(shape)).expand(shape)

    def spec(self) -> str:
        """The string that :func:`make_prior` turns back into this prior."""
        name = next(key for key, cls in PRIORS.items() if cls is type(self))
        numbers = [self.scale] + [getattr(self, arg.lower()) for arg in self.arguments]
        return ":".join([name] + [f"{value:g}" for value in numbers])


@PRIORS.register("normal")
class NormalPrior(Prior):
    """The paper's prior: every weight ~ N(0, scale^2), independently."""

    def family(self, scale: Tensor) -> dist.Distribution:
        return dist.Normal(torch.zeros_like(scale), scale)


@PRIORS.register("fanin")
class FanInPrior(NormalPrior):
    """N(0, scale^2 / fan_in), fan_in = prod(shape[1:]) (1 for a 1-D site such as a bias).

    >>> prior = FanInPrior(1.0)
    >>> round(float(prior.distribution((8, 4, 3, 3)).scale[0, 0, 0, 0]), 4)  # 1 / sqrt(4 * 9)
    0.1667
    >>> float(prior.distribution((8,)).scale[0])
    1.0
    """

    def factor(self, shape: torch.Size) -> float:
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        return 1 / math.sqrt(fan_in)


@PRIORS.register("laplace")
class LaplacePrior(Prior):
    """Laplace(0, b = scale): density exp(-|w| / b) / (2 b)."""

    def family(self, scale: Tensor) -> dist.Distribution:
        return dist.Laplace(torch.zeros_like(scale), scale)


@PRIORS.register("studentt")
class StudentTPrior(Prior):
    """Student's t with ``df`` degrees of freedom (default 3) and the given scale."""

    arguments = ("DF",)

    def __init__(self, scale: float, df: float = 3.0) -> None:
        super().__init__(scale)
        self.register_buffer("_df", torch.tensor(positive("studentt DF", df)))

    @property
    def df(self) -> float:
        return float(self._df)

    def family(self, scale: Tensor) -> dist.Distribution:
        return dist.StudentT(self._df.expand_as(scale), torch.zeros_like(scale), scale)


@PRIORS.register("mixture")
class MixturePrior(Prior):
    """The scale mixture ``pi N(0, scale^2) + (1 - pi) N(0, (scale / ratio)^2)``.

    Defaults: ``pi = 0.5``, ``ratio = 10`` (a wide and a narrow component).
    """

    arguments = ("PI", "RATIO")

    def __init__(self, scale: float, pi: float = 0.5, ratio: float = 10.0) -> None:
        super().__init__(scale)
        pi = float(pi)
        if not 0 < pi < 1:
            raise InvalidInputError(f"mixture PI must be in (0, 1), got {pi}")
        ratio = positive("mixture RATIO", ratio)
        self.register_buffer("_weights", torch.tensor([pi, 1 - pi]))
        self.register_buffer("_relative_scales", torch.tensor([1.0, 1.0 / ratio]))

    @property
    def pi(self) -> float:
        return float(self._weights[0])

    @property
    def ratio(self) -> float:
        return float(1 / self._relative_scales[1])

    def family(self, scale: Tensor) -> dist.Distribution:
        scales = scale.unsqueeze(-1) * self._relative_scales
        weights = dist.Categorical(probs=self._weights.expand(scales.shape))
        return dist.MixtureSameFamily(weights, dist.Normal(torch.zeros_like(scales), scales))


def prior_usage(name: str) -> str:
    """The spec form of the prior registered as ``name``, e.g. ``studentt:SCALE[:DF]``."""
    arguments = PRIORS[name].arguments
    return f"{name}:SCALE" + "".join(f"[:{arg}" for arg in arguments) + "]" * len(arguments)


def make_prior(spec: str | Prior) -> Prior:
    """Build a prior from ``"NAME:SCALE[:ARG...]"`` (e.g. ``"normal:0.05"``,
    ``"mixture:0.1:0.25:20"``); a Prior passes through."""
    if isinstance(spec, Prior):
        return spec
    name, *fields = str(spec).split(":")
    if name not in PRIORS:
        raise InvalidInputError(
            f"unknown prior {name!r}: choose one of {', '.join(map(prior_usage, PRIORS))}"
        )
    usage = prior_usage(name)
    if not fields or len(fields) > 1 + len(PRIORS[name].arguments):
        raise InvalidInputError(f"prior {spec!r} does not read {usage}, as in '{name}:0.05'")
    try:
        numbers = [float(field) for field in fields]
    except ValueError:
        raise InvalidInputError(
            f"prior {spec!r} needs numeric values: {usage}, as in '{name}:0.05'"
        ) from None
    return PRIORS[name](*numbers)

