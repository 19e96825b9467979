"""Could the network read the simulated noise from its input? (issue 15)

    python -m experiments.noise_leak --out runs/noise_leak

Before pyrodip drew the noise from a random stream of its own (:mod:`pyrodip.seeding`), an
observation simulated with the run's seed reused the uniform numbers that make the network's
input z. This script fits MFVI (the defaults, 1500 steps, 64 px) to the shared X-ray and OCT
tuning images with 10 % of the pixels held out, seeds 0-2, once with the noise drawn as it was
(``torch.Generator().manual_seed(seed)``) and once as it is now, and reports at the held-out
pixels, which the likelihood never sees, ``E[n e] / E[e^2]``: n the noise, e = mean - truth the
error. For a held-out pixel it must be 0 (its noise reaches the fit by no path); it is not,
when the input carries the noise. Writes ``OUT/leak.json`` (resumable by fit) and prints a
table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from experiments.study_jobs import DATA as SHARED_DATA
from experiments.study_jobs import SEEDS, interval

DATA = SHARED_DATA / "denoising"
IMAGES = ("xray2.png", "oct2.png")


def measure(image: str, seed: int, stream: str, steps: int, size: int) -> float:
    """``E[n e] / E[e^2]`` over the held-out pixels of one fit."""
    import torch

    from pyrodip import RunConfig, fit
    from pyrodip.physics.observation import hold_out
    from pyrodip.run.observe import prepare_observation

    torch.set_num_threads(1)
    config = RunConfig(image=str(DATA / image), size=size, steps=steps, seed=seed,
                       calibration="none")
    obs = prepare_observation(config)
    if stream == "shared":  # the noise as it was drawn before it had a stream of its own
        noise = torch.randn(obs.truth.shape, generator=torch.Generator().manual_seed(seed))
        obs = dataclasses.replace(obs, observation=obs.truth + config.noise_std * noise)
    fit_obs, held = hold_out(obs, 0.1, seed)
    mean = fit(fit_obs, config, progress=False).prediction.mean
    held = held.expand_as(mean)
    n, e = (obs.observation - obs.truth)[held], (mean - obs.truth)[held]
    return float((n * e).mean() / (e * e).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.noise_leak",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"error: the shared images are not at {DATA}", file=sys.stderr)
        return 2
    path = args.out / "leak.json"
    args.out.mkdir(parents=True, exist_ok=True)
    found = json.loads(path.read_text()) if path.exists() else {}
    for image in IMAGES:
        for stream in ("shared", "own"):
            for seed in SEEDS:
                key = f"{image} {stream} {seed}"
                if key not in found:
                    found[key] = measure(image, seed, stream, args.steps, args.size)
                    path.write_text(json.dumps(found, indent=1))
    print("| image | noise stream | E[n e] / E[e^2] at held-out pixels |\n| --- | --- | --- |")
    for image in IMAGES:
        for stream in ("shared", "own"):
            values = [found[f"{image} {stream} {seed}"] for seed in SEEDS]
            print(f"| {image} | {stream} | {interval(values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
