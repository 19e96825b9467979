"""pyrodip: Bayesian Deep Image Prior for medical-image inverse problems, as a Pyro model.

>>> import pyrodip
>>> config = pyrodip.RunConfig()                           # the CPU demo's settings
>>> observation = pyrodip.prepare_observation(config)      # noisy CT slice, truth kept
>>> result = pyrodip.fit(observation, config)              # doctest: +SKIP
>>> result.prediction.mean, result.prediction.std_epistemic  # doctest: +SKIP

A model and guide built by hand are fitted with :func:`fit_model`
(see :mod:`pyrodip.infer.loop` for the protocol they follow).
"""

from .bayes.guides import MAPGuide, MeanFieldGuide, make_guide, register_guide
from .bayes.likelihoods import GaussianLikelihood, Likelihood, PoissonLikelihood, SpeckleLikelihood
from .bayes.model import BayesianDIP
from .bayes.networks import NetConfig, SkipNet
from .bayes.priors import NormalPrior, Prior, make_prior, register_prior
from .errors import InvalidInputError, MissingFileError, OutputError, PyrodipError
from .infer.fitting import FitResult, Training
from .infer.loop import fit_model
from .infer.predictive import Prediction, predict
from .io.images import center_crop, load_image
from .physics.noise import GaussianNoise, PoissonNoise, SpeckleNoise, make_noise
from .physics.observation import Observation
from .physics.operators import Downsample, Identity, Mask
from .physics.radon import Radon
from .run.config import RunConfig
from .run.fit import build_model, fit, fit_batch
from .run.observe import prepare_observation
from .version import __version__

__all__ = [
    "BayesianDIP",
    "Downsample",
    "FitResult",
    "GaussianLikelihood",
    "GaussianNoise",
    "Identity",
    "Likelihood",
    "Mask",
    "PoissonLikelihood",
    "PoissonNoise",
    "Radon",
    "SpeckleLikelihood",
    "SpeckleNoise",
    "InvalidInputError",
    "MAPGuide",
    "MeanFieldGuide",
    "MissingFileError",
    "NetConfig",
    "NormalPrior",
    "Observation",
    "OutputError",
    "Prediction",
    "Prior",
    "PyrodipError",
    "RunConfig",
    "SkipNet",
    "Training",
    "build_model",
    "center_crop",
    "fit",
    "fit_batch",
    "fit_model",
    "load_image",
    "make_guide",
    "make_noise",
    "make_prior",
    "predict",
    "prepare_observation",
    "register_guide",
    "register_prior",
    "__version__",
]
