"""Tasks: what is observed of an image, as one object per task in :data:`TASKS`.

A :class:`Task` knows everything that depends on the kind of inverse problem: its forward
operator, how its noise is scaled, its mask, what an ``--observed`` image means for it, its
classical baselines and what its operator adds to a fit's memory. The settings it reads
(``settings`` below) are any object with the attributes of
:class:`pyrodip.run.config.RunConfig` it uses (``factor``, ``mask``, ``angles``,
``noise``, ``noise_std``, ``photons``, ``seed``, ``observed``);
:func:`pyrodip.run.observe.prepare_observation` drives them.

>>> sorted(TASKS)
['ct', 'denoise', 'inpaint', 'superres']
>>> task_of(Observation.simulate(torch.rand(1, 16, 16), noise=0.1)).name
'denoise'

Add a task by subclassing :class:`Task` and registering an instance with the settings it
reads beyond the general ones (superres's ``factor``, inpaint's ``mask``, ct's ``angles``):
``TASKS.register("deblur", DeblurTask(), options=[Option("kernel_size", int, 5, "...")])``
(see ``docs/extend.md``).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from ..io.images import center_crop
from ..registry import Registry
from ..seeding import generator
from ..settings import Option, positive_int
from .masks import names_a_mask_file, parse_mask
from .noise import NOISE_MODELS, GaussianNoise, NoiseModel, PoissonNoise
from .noise_estimate import estimate_noise_level, estimate_noise_std
from .observation import Observation
from .operators import SUPERRESOLUTION_FACTORS, Downsample, Identity, Mask, Subset
from .radon import Radon, default_ct_angles

__all__ = [
    "TASKS", "CTTask", "DenoiseTask", "InpaintTask", "SuperresTask", "Task", "classical_baselines",
    "task_of",
]

#: CT (Radon): float32 values per pixel and angle a fit keeps for the operator: the sampling
#: grid (2) and, in a step, the rotated images and their gradients (4; measured 3.5).
CT_FLOATS_PER_ANGLE = 6


#: The noise levels a simulation takes when the settings give none (``noise_std``, ``photons``).
DEFAULT_NOISE_STD = GaussianNoise.default_level
DEFAULT_PHOTONS = PoissonNoise.default_level


def noise_level_setting(noise: str) -> str:
    """The setting that gives the level of noise model ``noise``: its
    :attr:`~pyrodip.physics.noise.NoiseModel.level_setting` (``photons`` for Poisson, else
    ``noise_std``).

    >>> noise_level_setting("poisson"), noise_level_setting("speckle")
    ('photons', 'noise_std')
    """
    return NOISE_MODELS[noise].level_setting


def given_noise_level(settings: Any) -> float | None:
    """The level of the settings' noise model as they give it (:func:`noise_level_setting`),
    or None when they leave it to the default or the estimate."""
    return getattr(settings, noise_level_setting(settings.noise))


def noise_model(settings: Any, relative_to: float = 1.0, level: float | None = None) -> NoiseModel:
    """The noise model the settings name at ``level`` (default: the settings' own, else the
    model's :attr:`~pyrodip.physics.noise.NoiseModel.default_level`), scaled to images
    ``relative_to`` times larger (CT's largest projection) by the model's
    :meth:`~pyrodip.physics.noise.NoiseModel.scaled_level`."""
    if level is None:
        level = given_noise_level(settings)
    cls = NOISE_MODELS[settings.noise]
    return cls(cls.scaled_level(level or cls.default_level, relative_to))


def check_factor(name: str, value: object) -> int:
    """A super-resolution factor: one of :data:`SUPERRESOLUTION_FACTORS` (an int)."""
    if type(value) is not int or value not in SUPERRESOLUTION_FACTORS:
        raise InvalidInputError(
            "super-resolution factor must be one of "
            f"{', '.join(map(str, SUPERRESOLUTION_FACTORS))}, got {value!r}"
        )
    return value


class Task:
    """The base task: observe the image itself through :attr:`operator_type` (denoising)."""

    name: ClassVar[str] = ""
    #: The operators of this task: :func:`task_of` finds an observation's task by them.
    operator_type: ClassVar[type[nn.Module]] = Identity
    #: Whether an observed volume's noise level is estimated from its image slices (not, as
    #: for a sinogram, from the observation of each fit).
    estimates_noise_from_images: ClassVar[bool] = True
    #: Whether the reconstruction of an observed slice lies on the slice's own pixel grid.
    accepts_observed_slices: ClassVar[bool] = True
    #: Whether the task crops the slices to a square.
    needs_square_slices: ClassVar[bool] = False

    def observed_downscale(self, settings: Any) -> int:
        """How many times smaller (per side) an ``--observed`` image is than the image to
        reconstruct."""
        return 1

    def mask_file(self, settings: Any, shape: tuple[int, int]) -> Tensor | None:
        """A mask the settings name as a file, read at the loaded image's ``shape`` (so that it
        is resized with the image); None when the task has none or draws its mask."""
        return None

    def operator(
        self, settings: Any, shape: tuple[int, ...], mask: Tensor | None = None
    ) -> nn.Module:
        """The forward operator A for an image shaped ``shape`` (``mask``: a read mask file)."""
        return Identity()

    def noise(self, settings: Any) -> NoiseModel:
        """The noise model of the observation."""
        return noise_model(settings)

    def load_observed(self, settings: Any) -> Tensor | None:
        """The observation an ``--observed`` file holds, when the task reads it otherwise than
        as an image (:func:`~pyrodip.io.images.load_image`); None: as an image."""
        return None

    def estimate_noise(self, settings: Any, observation: Observation) -> float | None:
        """The level of the settings' noise model in an observed y, in the units of
        ``noise_std`` or ``photons`` (:mod:`pyrodip.physics.noise_estimate`); None when it
        cannot be estimated."""
        return estimate_noise_level(settings.noise, observation.observation)

    def simulate(
        self, settings: Any, image: Tensor, min_side: int, mask: Tensor | None, name: str
    ) -> Observation:
        """y = noise(A(x)) for the image cropped to the network's ``min_side``, the noise seeded
        from ``settings.seed``."""
        truth = center_crop(image, min_side)
        mask = None if mask is None else center_crop(mask, min_side)
        operator = self.operator(settings, tuple(truth.shape), mask)
        return Observation.simulate(truth, self.noise(settings), settings.seed, operator, name)

    def observe(
        self, settings: Any, image: Tensor, min_side: int, mask: Tensor | None, name: str
    ) -> Observation:
        """The image is the observation y itself (``--observed``): no truth."""
        raise InvalidInputError(f"`observed` is not supported for the {self.name} task")

    def baselines(self, observation: Observation) -> dict[str, np.ndarray | Tensor]:
        """Every classical reconstruction of ``observation`` this task has, by name, each
        (C, H, W) in [0, 1]; the first is the task's default. Denoising: every denoiser of
        :data:`~pyrodip.physics.baselines.DENOISERS` with the known noise level, through a
        variance-stabilising transform for speckle and Poisson noise (for other noise models,
        with a Gaussian std estimated from the image)."""
        from skimage import restoration

        from .baselines import DEFAULT_DENOISER, DENOISERS, STABILIZED, denoise_stabilized

        array, noise = _array(observation), observation.noise
        name, level = noise.name, noise.level
        if name not in STABILIZED:
            level = float(np.mean(restoration.estimate_sigma(array, channel_axis=0)))
            name = "gaussian"
        names = [DEFAULT_DENOISER, *(key for key in DENOISERS if key != DEFAULT_DENOISER)]
        return {key: denoise_stabilized(array, name, level, key) for key in names}

    def operator_floats(self, settings: Any, pixels: int) -> int:
        """float32 values the operator adds to a fit's memory (see
        :func:`pyrodip.run.resources.estimate_memory`); most operators are small."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DenoiseTask(Task):
    """Denoising: A is the identity."""

    name = "denoise"

    def observe(self, settings, image, min_side, mask, name):
        y = center_crop(image, min_side)
        return Observation.observed(y, self.noise(settings), name=name)


class SuperresTask(Task):
    """Super-resolution: A is anti-aliased downsampling by ``settings.factor``."""

    name = "superres"
    operator_type = Downsample
    accepts_observed_slices = False

    def observed_downscale(self, settings):
        return settings.factor

    def operator(self, settings, shape, mask=None):
        return Downsample(settings.factor)

    def observe(self, settings, image, min_side, mask, name):
        factor = settings.factor
        if min_side % factor:
            raise InvalidInputError(
                f"the network's minimum side {min_side} is not a multiple of the factor "
                f"{factor}: use a smaller `factor`"
            )
        y = center_crop(image, min_side // factor)
        channels, height, width = y.shape
        shape = (channels, height * factor, width * factor)
        return Observation.observed(y, self.noise(settings), Downsample(factor), shape, name)

    def baselines(self, observation):
        from .baselines import superresolve

        image, name = superresolve(_array(observation).clip(0, 1), _inner(observation).factor)
        return {name: image}


class InpaintTask(Task):
    """Inpainting: A keeps the known pixels of ``settings.mask`` (a file, ``random:F``,
    ``strokes`` or ``text``; drawn masks are seeded from ``settings.seed``)."""

    name = "inpaint"
    operator_type = Mask

    def mask_file(self, settings, shape):
        if not names_a_mask_file(settings.mask):
            return None
        return parse_mask(settings.mask, shape, seed=settings.seed)

    def operator(self, settings, shape, mask=None):
        if mask is None:
            mask = parse_mask(settings.mask, tuple(shape[-2:]), seed=settings.seed)
        return Mask(mask)

    def observe(self, settings, image, min_side, mask, name):
        y = center_crop(image, min_side)
        if mask is None:
            mask = parse_mask(settings.mask, tuple(image.shape[-2:]), settings.seed)
        mask = center_crop(mask, min_side)
        return Observation.observed(y, self.noise(settings), Mask(mask), tuple(y.shape), name)

    def baselines(self, observation):
        from .baselines import inpaint

        known = _inner(observation).observed_mask[0, 0].cpu().numpy()
        image, name = inpaint(_array(observation).clip(0, 1), known)
        return {name: image}


class CTTask(Task):
    """Sparse-view CT: A is the Radon transform over ``settings.angles`` angles of the square
    image; Gaussian std and Poisson counts are relative to the largest projection."""

    name = "ct"
    operator_type = Radon
    estimates_noise_from_images = False
    accepts_observed_slices = False
    needs_square_slices = True

    def operator(self, settings, shape, mask=None):
        return Radon(default_ct_angles(settings.angles), image_size=shape[-2])

    def simulate(self, settings, image, min_side, mask, name):
        truth = center_crop(_square(image), min_side)
        operator = self.operator(settings, tuple(truth.shape))
        # The scanner sees only the inscribed circle: what lies outside cannot be reconstructed.
        truth = truth * operator.circle.to(truth.dtype).reshape(truth.shape[-2:])
        clean = operator(truth[None])[0]
        scale = float(clean.abs().max())
        noise = noise_model(settings, relative_to=scale)
        observation = noise.sample(clean, generator(settings.seed, "noise"))
        return Observation(observation, truth, tuple(truth.shape), noise, operator, name, scale)

    def load_observed(self, settings):
        from ..io.sinograms import load_sinogram

        return load_sinogram(settings.image)

    def observe(self, settings, image, min_side, mask, name):
        """A measured sinogram (detectors x angles, as :class:`Radon` gives it), scaled so
        that its filtered back projection peaks at 1: the reconstruction is in those units."""
        sinogram = image[:1]
        detectors, angles = sinogram.shape[-2:]
        if angles != settings.angles:
            hint = ("it looks stored angles x detectors: transpose it" if detectors ==
                    settings.angles else f"give `angles={angles}`")
            raise InvalidInputError(
                f"the sinogram is {detectors}x{angles} (detectors x angles) but `angles` is "
                f"{settings.angles}: {hint}"
            )
        if detectors % min_side:
            raise InvalidInputError(
                f"the sinogram has {detectors} detector bins but the image side must be a "
                f"multiple of {min_side}: pad its detector axis (rows) with zeros to "
                f"{detectors + (-detectors) % min_side}"
            )
        operator = self.operator(settings, (1, detectors, detectors))
        fbp = operator.fbp(sinogram[None])[0]
        scale = float(torch.quantile(fbp.flatten(), 0.999))
        if not scale > 0:
            raise InvalidInputError(
                f"the sinogram of {name} back-projects to no positive values: check its sign "
                "and layout (detectors x angles)"
            )
        y = sinogram / scale
        largest = float(y.abs().max())
        noise = noise_model(settings, relative_to=largest)
        shape = (1, detectors, detectors)
        return Observation(y, None, shape, noise, operator, name, largest, observed_scale=scale)

    def estimate_noise(self, settings, observation):
        if settings.noise != "gaussian":  # only Gaussian noise is estimated in a sinogram
            return None
        y = observation.observation / observation.observation_range
        return estimate_noise_std(y, -np.inf, np.inf)

    def baselines(self, observation):
        from .baselines import sart

        operator = _inner(observation)
        y = observation.observation.detach().cpu()
        device = operator.ramp.device  # the operator may have moved with a fitted model
        fbp = operator.fbp(y[None].to(device))[0].clamp(0, 1).cpu()
        return {"fbp": fbp, "sart": sart(y.numpy(), np.array(operator.angles))}

    def operator_floats(self, settings, pixels):
        return CT_FLOATS_PER_ANGLE * settings.angles * pixels


TASKS: Registry[Task] = Registry("task")
"""The tasks by name (``--task``), each a :class:`Task` instance."""
TASKS.register("denoise", DenoiseTask())
TASKS.register("superres", SuperresTask(), options=[
    Option("factor", int, 4, "superres: downsampling factor, 2, 4 or 8", check=check_factor)])
TASKS.register("inpaint", InpaintTask(), options=[Option(
    "mask", str, "strokes", "inpaint: mask file (255 = known), random:FRACTION, strokes or text")])
TASKS.register("ct", CTTask(), options=[
    Option("angles", int, 45, "ct: projections evenly over [0, 180) degrees", check=positive_int)])


def task_of(observation: Observation) -> Task:
    """The task whose operators observed ``observation`` (denoising for an operator no task
    claims; a :class:`~pyrodip.physics.operators.Subset` is its operator's task)."""
    operator = observation.operator
    if isinstance(operator, Subset):
        operator = operator.operator
    for task in TASKS.values():
        if task.operator_type is not Identity and isinstance(operator, task.operator_type):
            return task
    return TASKS["denoise"]


def _inner(observation: Observation) -> nn.Module:
    """The observation's operator, inside a held-out :class:`Subset` if it is one."""
    operator = observation.operator
    return operator.operator if isinstance(operator, Subset) else operator


def _array(observation: Observation) -> np.ndarray:
    return observation.observation.detach().cpu().numpy().astype(np.float64)


def _square(image: Tensor) -> Tensor:
    height, width = image.shape[-2:]
    if height == width:
        return image
    side = min(height, width)
    warnings.warn(
        f"center-cropping the image from {height}x{width} to {side}x{side}: "
        "the CT operator needs a square image",
        stacklevel=4,
    )
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top : top + side, left : left + side]


def classical_baselines(observation) -> dict[str, torch.Tensor]:
    """Every classical reconstruction of an
    :class:`~pyrodip.physics.observation.Observation` its task has
    (:func:`pyrodip.physics.tasks.task_of`, by the operator), by name, the task's default
    first: the denoisers (TV, wavelet, NLM, BM3D) with the known noise level (variance-
    stabilised for speckle and Poisson), bicubic super-resolution, biharmonic inpainting, or
    filtered back projection and SART for CT. Each a (C, H, W) tensor in [0, 1]."""
    images = task_of(observation).baselines(observation)
    return {
        name: image if isinstance(image, torch.Tensor)
        else torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        for name, image in images.items()
    }
