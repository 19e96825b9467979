"""pyrodip: Bayesian Deep Image Prior for medical-image inverse problems, as a Pyro model.

>>> import pyrodip
>>> config = pyrodip.RunConfig()                           # the CPU demo's settings
>>> observation = pyrodip.prepare_observation(config)      # noisy CT slice, truth kept
>>> result = pyrodip.fit(observation, config)              # doctest: +SKIP
>>> result.prediction.mean, result.prediction.std_epistemic  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .config import RunConfig
from .data import center_crop, load_image
from .errors import InvalidInputError, MissingFileError, PyrodipError
from .guides import MAPGuide, MeanFieldGuide, make_guide, register_guide
from .inference import FitResult, fit
from .likelihoods import GaussianLikelihood, Likelihood, PoissonLikelihood, SpeckleLikelihood
from .model import BayesianDIP
from .networks import NetConfig, SkipNet
from .noise import GaussianNoise, PoissonNoise, SpeckleNoise, make_noise
from .observation import Observation, prepare_observation
from .operators import Downsample, Identity, Mask, Radon
from .predictive import Prediction, predict
from .priors import NormalPrior, Prior, make_prior, register_prior

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
    "Prediction",
    "Prior",
    "PyrodipError",
    "RunConfig",
    "SkipNet",
    "center_crop",
    "fit",
    "load_image",
    "make_guide",
    "make_noise",
    "make_prior",
    "predict",
    "prepare_observation",
    "register_guide",
    "register_prior",
]
