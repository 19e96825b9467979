"""A measured CT sinogram (``--task ct --observed``): read as it is, checked against the
angles, scaled so its back projection peaks at 1, its noise level estimated."""

import numpy as np
import pytest
import torch
from conftest import exit_code

from pyrodip.errors import InvalidInputError
from pyrodip.physics.radon import Radon, default_ct_angles
from pyrodip.run.config import RunConfig
from pyrodip.run.observe import prepare_observation
from pyrodip.seeding import generator


@pytest.fixture
def sinogram(tmp_path, phantom64):
    """The 64 px phantom's sinogram over 30 angles, in other units (x 37), with Gaussian noise
    of 2 % of its largest projection: (path, clean sinogram)."""
    operator = Radon(default_ct_angles(30), 64)
    clean = 37 * operator(phantom64[None] * operator.circle.reshape(64, 64))[0]
    noise = torch.randn(clean.shape, generator=generator(0, "noise"))
    measured = clean + 0.02 * float(clean.max()) * noise
    path = tmp_path / "sinogram.npy"
    np.save(path, measured[0].numpy())
    return path, clean


def config(path, **settings) -> RunConfig:
    return RunConfig(image=str(path), task="ct", observed=True, angles=30, **settings)


def test_sinogram_is_observed_as_measured(sinogram):
    path, clean = sinogram
    observation = prepare_observation(config(path))
    assert tuple(observation.observation.shape) == (1, 64, 30)
    assert observation.image_shape == (1, 64, 64) and not observation.has_truth
    # y = measured / scale: linear, so the scaled y times the scale is the file's values
    measured = torch.from_numpy(np.load(path))
    assert torch.allclose(observation.observation[0] * observation.observed_scale, measured,
                          atol=1e-4)
    fbp = observation.operator.fbp(observation.observation[None])
    assert float(torch.quantile(fbp.flatten(), 0.999)) == pytest.approx(1, rel=1e-4)
    assert observation.noise_estimate == pytest.approx(0.02, rel=0.15)
    assert observation.noise.std == pytest.approx(
        observation.noise_estimate * observation.observation_range)


@pytest.mark.parametrize("settings, fragment", [
    ({"angles": 45}, "give --angles 30"),
    ({"noise": "poisson"}, "cannot estimate the level of poisson noise in"),
    ({"size": 32}, "cannot resize a ct measurement"),
])
def test_bad_settings_for_a_sinogram(sinogram, tmp_path, capsys, settings, fragment):
    path, _ = sinogram
    argv = ["run", "--image", str(path), "--task", "ct", "--observed", "--angles", "30",
            "--out", str(tmp_path / "out")]
    for key, value in settings.items():
        argv += [f"--{key}", str(value)]
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2 and fragment in err, err
    assert not (tmp_path / "out").exists()


def test_transposed_and_badly_sized_sinograms_are_refused(tmp_path):
    transposed = tmp_path / "transposed.npy"
    np.save(transposed, np.ones((30, 64), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="angles x detectors: transpose it"):
        prepare_observation(config(transposed))
    odd = tmp_path / "odd.npy"
    np.save(odd, np.ones((50, 30), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="pad its detector axis .* to 64"):
        prepare_observation(config(odd))
    for array, fragment in ((np.ones((2, 50, 30)), "2-D numeric array"),
                            (np.full((64, 30), np.nan), "NaN")):
        bad = tmp_path / "bad.npy"
        np.save(bad, array)
        with pytest.raises(InvalidInputError, match=fragment):
            prepare_observation(config(bad))


def test_a_level_the_task_cannot_estimate_is_taken_as_given(sinogram):
    path, _ = sinogram
    observation = prepare_observation(config(path, noise="poisson", photons=500.0))
    assert observation.noise.name == "poisson" and observation.noise_estimate is None
    assert observation.noise.level == pytest.approx(500.0 / observation.observation_range)


def test_cli_reconstructs_a_sinogram(sinogram, tmp_path, capsys):
    path, _ = sinogram
    out = tmp_path / "out"
    code = exit_code(["run", "--image", str(path), "--task", "ct", "--observed", "--angles",
                      "30", "--steps", "2", "--samples", "2", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "estimated from the image" in printed and (out / "result.nc").exists()
