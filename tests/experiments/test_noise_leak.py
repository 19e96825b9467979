"""The noise-leak experiment (experiments/noise_leak.py): its two noise streams and its
measure at the held-out pixels."""

import torch

from experiments.common import run_fits
from experiments.noise_leak import STREAMS, own_stream, shared_stream
from pyrodip.run.config import RunConfig
from pyrodip.studies.grid import GridRun, run_metrics

CONFIG = RunConfig(image="sample:phantom", size=32, steps=3, samples=2, seed=1,
                   calibration="none")


def test_the_streams_draw_other_noise_and_hide_the_same_pixels():
    own, shared = own_stream(CONFIG), shared_stream(CONFIG)
    assert torch.equal(own.operator.observed_mask, shared.operator.observed_mask)
    assert int((~own.operator.observed_mask).sum()) == round(0.1 * 32 * 32)
    assert not torch.equal(own.observation, shared.observation)
    assert torch.equal(own.truth, shared.truth)


def test_the_leak_is_measured_on_every_fit(tmp_path):
    outcome = run_fits([GridRun("phantom_own_seed1", CONFIG)], tmp_path, STREAMS["own"], 1)
    value = run_metrics(outcome.datasets["phantom_own_seed1"])["leak"]
    assert -1 < value < 1
