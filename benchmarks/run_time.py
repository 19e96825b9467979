"""The time of the default reconstruction against plain DIP's steps, measured side by side.

Times, in one process and interleaved (each repetition runs both, in a rotating order), the
fit of ``pyrodip.fit`` with the default settings (``RunConfig()``: mfvi, its default steps,
its readout; the classical baselines are not part of a fit) and a plain DIP fit of
``--dip-steps`` steps on the same observation, and reports the median ratio of the two. The
default run is meant to take no longer than about 1300 DIP steps.

Usage::

    python benchmarks/run_time.py --threads 1                 # 128 x 128, 3 repetitions
    python benchmarks/run_time.py --size 64 --repeats 5
    python benchmarks/run_time.py --smoke                      # tiny, for the tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from pyrodip import RunConfig, fit
from pyrodip.run.observe import prepare_observation


def seconds(config: RunConfig, observation) -> float:
    """Wall seconds of one fit of ``config`` to ``observation``."""
    start = time.perf_counter()
    fit(observation, config, progress=False)
    return time.perf_counter() - start


def measure(size: int, dip_steps: int, repeats: int, steps: int | None = None) -> dict:
    """The default fit's seconds, DIP's and their median ratio over ``repeats`` pairs."""
    default = RunConfig(size=size) if steps is None else RunConfig(size=size, steps=steps)
    dip = default.replace(method="dip", steps=dip_steps)
    observation = prepare_observation(default)
    pairs = []
    for repeat in range(repeats):
        order = (default, dip) if repeat % 2 == 0 else (dip, default)
        times = {config.method: seconds(config, observation) for config in order}
        pairs.append((times["mfvi"], times["dip"]))
    return {
        "size": size, "steps": default.steps, "dip_steps": dip_steps, "repeats": repeats,
        "default_s": statistics.median(p[0] for p in pairs),
        "dip_s": statistics.median(p[1] for p in pairs),
        "ratio": statistics.median(p[0] / p[1] for p in pairs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image side [128]")
    parser.add_argument("--dip-steps", type=int, default=1300, help="DIP's steps [1300]")
    parser.add_argument("--repeats", type=int, default=3, help="timed pairs [3]")
    parser.add_argument("--threads", type=int, help="torch CPU threads [torch's default]")
    parser.add_argument("--smoke", action="store_true", help="32 px, 20 steps, 1 pair")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        found = measure(32, 26, 1, steps=20)
    else:
        found = measure(args.size, args.dip_steps, args.repeats)
    print(f"{found['size']} px, {torch.get_num_threads()} thread(s), {found['repeats']} pairs: "
          f"default ({found['steps']} steps) {found['default_s']:.1f} s, DIP "
          f"({found['dip_steps']} steps) {found['dip_s']:.1f} s, ratio {found['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
