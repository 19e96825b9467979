import pyro
import pytest
import torch

from pyrodip import BayesianDIP, GaussianLikelihood, InvalidInputError, NetConfig, make_guide
from pyrodip.infer.predictive import predict

TINY = NetConfig(scales=2, input_channels=4, channels_down=4, channels_up=4, channels_skip=2)


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_streaming_summaries_equal_those_of_the_kept_samples(heteroscedastic):
    pyro.set_rng_seed(0)
    likelihood = GaussianLikelihood(0.1, heteroscedastic=heteroscedastic)
    model = BayesianDIP((2, 16, 16), net=TINY, likelihood=likelihood)
    guide = make_guide("meanfield", model, init_scale=0.1)
    prediction = predict(model, guide, num_samples=7, keep_samples=True)
    samples = prediction.samples
    assert samples.shape == (7, 2, 16, 16)
    assert torch.allclose(prediction.mean, samples.mean(0), atol=1e-6)
    assert torch.allclose(prediction.std_epistemic, samples.std(0, unbiased=True), atol=1e-6)
    assert (prediction.std_epistemic > 0).all()
    if heteroscedastic:
        assert prediction.std_aleatoric.shape == (2, 16, 16)
        total = (prediction.std_epistemic**2 + prediction.std_aleatoric**2).sqrt()
        assert torch.allclose(prediction.std_total, total)
    else:
        assert prediction.std_aleatoric is None
        assert torch.equal(prediction.std_total, prediction.std_epistemic)


def test_map_guide_has_no_epistemic_uncertainty():
    model = BayesianDIP((1, 16, 16), net=TINY)
    prediction = predict(model, make_guide("map", model), num_samples=3)
    assert torch.count_nonzero(prediction.std_epistemic) == 0


def test_prediction_keeps_the_training_mode_and_refuses_zero_samples():
    model = BayesianDIP((1, 16, 16), net=TINY)
    guide = make_guide("meanfield", model)
    model.train()
    predict(model, guide, num_samples=2)
    assert model.training
    with pytest.raises(InvalidInputError, match="samples"):
        predict(model, guide, num_samples=0)
