import pyro.distributions as dist
import pytest
import torch

from pyrodip import InvalidInputError, NormalPrior, make_prior
from pyrodip.priors import PRIORS, Prior, register_prior


def test_spec_round_trip():
    prior = make_prior("normal:0.05")
    assert isinstance(prior, NormalPrior)
    assert prior.scale == pytest.approx(0.05)
    assert make_prior(prior.spec()).scale == pytest.approx(0.05)


def test_scale_changes_in_place():
    prior = make_prior("normal:0.05")
    buffer = prior._scale
    prior.scale = 0.2
    assert prior._scale is buffer
    assert float(prior.distribution((3,)).scale[0]) == pytest.approx(0.2)


@pytest.mark.parametrize("spec, words", [("cauchy:1", "choose one of normal"),
                                         ("normal:abc", "numeric scale"),
                                         ("normal:-1", "positive"),
                                         ("normal:nan", "positive")])
def test_bad_specs_are_refused(spec, words):
    with pytest.raises(InvalidInputError, match=words):
        make_prior(spec)


def test_user_prior_can_be_registered():
    @register_prior("test_laplace")
    class LaplacePrior(Prior):
        def distribution(self, shape):
            return dist.Laplace(0.0, self._scale).expand(torch.Size(shape))

    try:
        prior = make_prior("test_laplace:0.3")
        assert prior.spec() == "test_laplace:0.3"
        assert prior.distribution((2, 2)).batch_shape == (2, 2)
    finally:
        del PRIORS["test_laplace"]
