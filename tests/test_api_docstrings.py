"""Every name of ``pyrodip.__all__`` that takes or returns tensors or arrays states their shapes
in its docstring, BoTorch's way: "A `(C, H, W)` tensor"."""

import inspect
import re

import pytest

import pyrodip

#: The names of pyrodip.__all__ that take or return tensors or arrays.
TENSOR_NAMES = (
    "BayesianDIP",
    "Downsample",
    "FitResult",
    "GaussianLikelihood",
    "GaussianNoise",
    "Identity",
    "Likelihood",
    "Mask",
    "Observation",
    "PoissonLikelihood",
    "PoissonNoise",
    "Prediction",
    "Radon",
    "SkipNet",
    "SpeckleLikelihood",
    "SpeckleNoise",
    "center_crop",
    "fit_model",
    "load_image",
    "predict",
)
#: One axis of a shape: C, H', 3, ..., W / factor or 1 or C.
AXIS = r"(?:\.\.\.|\w+'?(?: (?:/|or) \w+'?)?)"
#: A shape in parentheses: at least two axes, one of them a capital letter.
SHAPE = re.compile(rf"\({AXIS}(?:, {AXIS})+\)")


def names_a_shape(text: str) -> bool:
    return any(re.search(r"[A-Z]", match) for match in SHAPE.findall(text))


def docstrings(obj) -> str:
    """The docstrings of ``obj`` and of its __init__, __call__ and forward."""
    parts = [inspect.getdoc(obj)]
    parts += [inspect.getdoc(getattr(obj, name, None)) for name in ("__init__", "__call__",
                                                                      "forward")]
    return "\n".join(part for part in parts if part)


def test_the_shape_pattern_finds_shapes_and_only_shapes():
    assert names_a_shape("Args: image: A `(C, H, W)` tensor")
    assert names_a_shape("a `(B, C, H / factor, W / factor)` tensor; y `(C, H', W')`")
    assert names_a_shape("an `(..., H, W)` array")
    assert not names_a_shape("the crop of (1, 64, 48) (an example)")
    assert not names_a_shape("the likelihood (gaussian, speckle or poisson)")
    assert not names_a_shape("the peak (its std, or its peak for Poisson)")


def test_every_listed_name_is_public():
    assert set(TENSOR_NAMES) <= set(pyrodip.__all__)


@pytest.mark.parametrize("name", TENSOR_NAMES)
def test_docstring_states_the_tensor_shapes(name):
    assert names_a_shape(docstrings(getattr(pyrodip, name))), (
        f"pyrodip.{name}'s docstring names no shape: state it as A `(C, H, W)` tensor"
    )
