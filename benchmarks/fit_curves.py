"""First-step losses and 200-step PSNR curves of every method, to check that a change of the
code leaves the results as they were (same seeds, same numbers).

Runs, on the CT sample with the default settings (Gaussian noise 0.1, seed 0): mfvi, dip,
sgld (burn-in 100, a sample every 10 steps), mcdropout, mfvi with a Laplace prior, mfvi on the
Pyro engine, a partial guide, a learned noise level (200 steps each), and the default run
(1000 steps). Writes the curves as JSON; with ``--compare OLD.json`` prints, per case, the
first step whose PSNR differs and the largest difference.

Usage::

    python benchmarks/fit_curves.py new.json                       # about 4 minutes, 1 thread
    python benchmarks/fit_curves.py new.json --compare old.json    # old.json: from another checkout
    python benchmarks/fit_curves.py new.json --smoke               # 3 steps per case (tests)
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from pyrodip import RunConfig, fit, prepare_observation

CASES = {
    "mfvi": {},
    "dip": {"method": "dip"},
    "sgld": {"method": "sgld", "burn_in": 100, "sample_every": 10},
    "mcdropout": {"method": "mcdropout"},
    "mfvi_laplace": {"prior": "laplace:0.1"},
    "mfvi_pyro": {"engine": "pyro"},
    "partial": {"guide": "partial:net.head.*"},
    "learned": {"noise_level": "learned"},
    "default": None,
}


def curves(smoke: bool = False) -> dict[str, dict]:
    """The loss of the first two steps and the PSNR curve of every case."""
    found = {}
    for name, settings in CASES.items():
        config = RunConfig() if settings is None else RunConfig(steps=200, samples=8, **settings)
        if smoke:
            config = config.replace(steps=3, samples=2, burn_in=1 if name == "sgld" else None)
        result = fit(prepare_observation(config), config, progress=False)
        loss, psnr = result.history.curves["loss"], result.history.curves["psnr"]
        found[name] = {"loss": loss[:2].tolist(), "psnr": psnr.tolist()}
        print(f"{name:<13} first loss {loss[0]:.6f}  final PSNR {psnr[-1]:.4f} dB", flush=True)
    return found


def compare(new: dict, old: dict) -> None:
    """Per case: the first step whose PSNR differs, and the largest difference (dB)."""
    for name in new:
        if name not in old:
            continue
        a, b = np.array(new[name]["psnr"]), np.array(old[name]["psnr"])
        differs = np.flatnonzero(a != b)
        first = int(differs[0]) + 1 if differs.size else None
        print(f"{name:<13} first loss {new[name]['loss'][0]:.6f} (was {old[name]['loss'][0]:.6f})"
              f"  PSNR differs from step {first}, by up to {np.abs(a - b).max():.4f} dB"
              f"  (final {a[-1]:.4f}, was {b[-1]:.4f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="JSON file to write the curves to")
    parser.add_argument("--compare", metavar="OLD_JSON", help="curves of another checkout")
    parser.add_argument("--smoke", action="store_true", help="3 steps per case")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    new = curves(args.smoke)
    with open(args.out, "w") as file:
        json.dump(new, file)
    if args.compare:
        with open(args.compare) as file:
            compare(new, json.load(file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
