"""Could the network read the simulated noise from its input? (issue 15)

    python -m experiments.noise_leak --out runs/noise_leak

Before pyrodip drew the noise from a random stream of its own (:mod:`pyrodip.seeding`), an
observation simulated with the run's seed reused the uniform numbers that make the network's
input z. This script fits MFVI (the defaults, 1500 steps, 64 px) to the shared X-ray and OCT
tuning images with 10 % of the pixels held out, seeds 0-2, once with the noise drawn as it was
(``torch.Generator().manual_seed(seed)``) and once as it is now, and reports at the held-out
pixels, which the likelihood never sees, ``E[n e] / E[e^2]``: n the noise, e = mean - truth the
error. For a held-out pixel it must be 0 (its noise reaches the fit by no path); it is not,
when the input carries the noise. The fits run on :mod:`pyrodip.studies.grid`
(:mod:`experiments.common`), each to ``OUT/runs/NAME.nc`` with its value in its ``metrics``
(resumable by fit; the ``OUT/leak.json`` of earlier versions is not read); prints a table of
the mean and the 95 % t-interval half-width over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from experiments.common import DATA as SHARED_DATA
from experiments.common import PLUS_MINUS, SEEDS, run_fits, table
from pyrodip.evaluate.statistics import format_interval
from pyrodip.physics.observation import Observation, hold_out
from pyrodip.run.config import RunConfig
from pyrodip.run.observe import prepare_observation
from pyrodip.studies.grid import GridRun, Hooks, run_metrics

DATA = SHARED_DATA / "denoising"
IMAGES = ("xray2.png", "oct2.png")
HELDOUT_FRACTION = 0.1


def own_stream(config: RunConfig) -> Observation:
    """The ``observe`` hook of the noise as it is drawn now, the held-out pixels hidden."""
    return hold_out(prepare_observation(config), HELDOUT_FRACTION, config.seed)[0]


def shared_stream(config: RunConfig) -> Observation:
    """The ``observe`` hook of the noise as it was drawn before it had a stream of its own
    (``torch.Generator().manual_seed(seed)``), the held-out pixels hidden."""
    import torch

    obs = prepare_observation(config)
    noise = torch.randn(obs.truth.shape, generator=torch.Generator().manual_seed(config.seed))
    obs = dataclasses.replace(obs, observation=obs.truth + obs.noise.std * noise)
    return hold_out(obs, HELDOUT_FRACTION, config.seed)[0]


def leak(result, observation: Observation) -> dict:
    """The ``metrics`` hook: ``E[n e] / E[e^2]`` over the held-out pixels of one fit."""
    mean = result.prediction.mean
    held = ~observation.operator.observed_mask[0].expand_as(mean)
    n = (observation.observation - observation.truth)[held]
    e = (mean - observation.truth)[held]
    return {"leak": float((n * e).mean() / (e * e).mean())}


STREAMS = {"shared": Hooks(observe=shared_stream, metrics=leak, baselines=False),
           "own": Hooks(observe=own_stream, metrics=leak, baselines=False)}


def runs(stream: str, steps: int, size: int) -> list[GridRun]:
    """The fits of one noise stream: every image and seed."""
    return [GridRun(f"{Path(image).stem}_{stream}_seed{seed}",
                    RunConfig(image=str(DATA / image), size=size, steps=steps, seed=seed,
                              calibration="none"))
            for image in IMAGES for seed in SEEDS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.noise_leak",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2,
                        help="local Dask workers of one thread each (1: in this process)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"error: the shared images are not at {DATA}", file=sys.stderr)
        return 2
    found = {stream: run_fits(runs(stream, args.steps, args.size), args.out, hooks,
                              args.workers, desc=stream).datasets
             for stream, hooks in STREAMS.items()}
    rows = []
    for image in IMAGES:
        for stream in STREAMS:
            values = [run_metrics(dataset)["leak"] for name, dataset in found[stream].items()
                      if name.startswith(f"{Path(image).stem}_")]
            if values:
                rows.append([image, stream, format_interval(values)])
    print(f"{PLUS_MINUS}\n")
    print("\n".join(table(["image", "noise stream", "E[n e] / E[e^2] at held-out pixels"], rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
