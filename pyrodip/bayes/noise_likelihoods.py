"""The likelihood that matches each noise model of :mod:`pyrodip.physics.noise`, by the noise
model's name: :func:`noise_likelihood` looks it up in :data:`NOISE_LIKELIHOODS`, where a
plugin's noise model registers its own.

>>> from pyrodip.physics.noise import SpeckleNoise
>>> noise_likelihood(SpeckleNoise(0.2), learn=True).name
'speckle-learned'
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidInputError
from ..physics.noise import NoiseModel
from ..registry import Registry
from .likelihoods import GaussianLikelihood, Likelihood, PoissonLikelihood, SpeckleLikelihood

__all__ = ["NOISE_LIKELIHOODS", "noise_likelihood"]


NOISE_LIKELIHOODS: Registry[Callable[[NoiseModel, bool, bool], Likelihood]] = Registry(
    "noise model's likelihood"
)
"""The likelihood of each noise model, by the noise model's name: a function
``build(noise, learn, heteroscedastic)`` that returns it. A plugin's noise model registers its
own with ``NOISE_LIKELIHOODS.register("name", build)``."""


def noise_likelihood(
    noise: NoiseModel, learn: bool = False, heteroscedastic: bool = False
) -> Likelihood:
    """The likelihood that matches ``noise`` at its level (``learn``: fit its std too;
    ``heteroscedastic``: a per-pixel std from the network): the one registered under the noise
    model's name, or else under the name of the nearest base class that has one.

    >>> from pyrodip.physics.noise import GaussianNoise, PoissonNoise
    >>> noise_likelihood(GaussianNoise(0.1), heteroscedastic=True).extra_channels
    1
    >>> noise_likelihood(PoissonNoise(100.0)).name
    'poisson'
    """
    for cls in type(noise).__mro__:
        build = NOISE_LIKELIHOODS.get(getattr(cls, "name", ""))
        if build is not None:
            return build(noise, learn, heteroscedastic)
    raise InvalidInputError(
        f"noise model {noise.name!r} has no likelihood: register one with "
        f"NOISE_LIKELIHOODS.register({noise.name!r}, build)"
    )


def _refuse(noise: NoiseModel, learn: bool, heteroscedastic: bool, can_learn: bool) -> None:
    if heteroscedastic:
        raise InvalidInputError(
            f"{noise.name} noise has no heteroscedastic likelihood: use gaussian noise for a "
            "per-pixel std"
        )
    if learn and not can_learn:
        raise InvalidInputError(
            f"{noise.name} noise has no std to learn (its variance follows from the peak): "
            "pass learn=False"
        )


@NOISE_LIKELIHOODS.register("gaussian")
def _gaussian(noise: NoiseModel, learn: bool, heteroscedastic: bool) -> Likelihood:
    return GaussianLikelihood(noise.level, learn_std=learn, heteroscedastic=heteroscedastic)


@NOISE_LIKELIHOODS.register("speckle")
def _speckle(noise: NoiseModel, learn: bool, heteroscedastic: bool) -> Likelihood:
    _refuse(noise, learn, heteroscedastic, can_learn=True)
    return SpeckleLikelihood(noise.level, learn_std=learn)


@NOISE_LIKELIHOODS.register("poisson")
def _poisson(noise: NoiseModel, learn: bool, heteroscedastic: bool) -> Likelihood:
    _refuse(noise, learn, heteroscedastic, can_learn=False)
    return PoissonLikelihood(noise.level)
