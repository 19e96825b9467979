"""Batched fits against one fit: the step of B fits run as one batched computation
(:func:`pyrodip.fit_batch`) over the step of one fit, measured side by side in one process.

Each fit is the default MFVI run (``RunConfig()``: small network, mean-field guide, Adam,
input jitter) on the CT sample at ``--size``, with seeds 0 .. B-1. One call of a variant is
``--steps`` steps as the fit loops run them (loss, backward, optimiser step, the curves
recorded on the device). Every repetition runs the single fit and each batch once, in a
rotating order, after warm-up; ``ratio_to_one`` is the median over repetitions of (one
batched step of B fits) / (one single fit's step), measured in the same repetition. A ratio
below B means the batch is cheaper than B fits one after another.

Usage::

    python benchmarks/batched_fits.py                       # CPU, 64 px, B = 1 4 16
    python benchmarks/batched_fits.py --json                # the JSON instead of the table
    python benchmarks/batched_fits.py --device cuda --size 128 --batch 1 4 16 64
    python benchmarks/batched_fits.py --smoke               # tiny, 2 repetitions (CI)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).parent))
from step_time import interleaved, paired_ratio, show  # noqa: E402

from pyrodip import RunConfig, prepare_observation  # noqa: E402
from pyrodip.infer.batched import _Batch, fit_generator  # noqa: E402
from pyrodip.infer.fitting import Fitting  # noqa: E402
from pyrodip.run.fit import build_model, training  # noqa: E402

KEYS = ("device", "size", "batch", "step_ms", "ratio_to_one")


class Fits:
    """``count`` fits of ``config`` (seeds 0 .. count-1), stepped together (count > 1, as
    :func:`pyrodip.fit_batch` steps them) or alone (count 1, as :func:`pyrodip.fit` does)."""

    def __init__(self, config: RunConfig, count: int, steps: int, total_steps: int) -> None:
        device = torch.device(config.device)
        fittings, generators = [], []
        for seed in range(count):
            seeded = config.replace(seed=seed, steps=total_steps)
            observation = prepare_observation(seeded)
            pyro.set_rng_seed(seed)
            model, guide = build_model(seeded, observation)
            model.to(device)
            guide.to(device)
            generators.append(fit_generator(device))
            fittings.append(Fitting(model, guide, observation, training(seeded), None, "", None))
            model.train()
        self.fittings, self.steps, self.done = fittings, steps, 0
        self.batch = _Batch(fittings, generators) if count > 1 else None

    def __call__(self) -> None:
        for _ in range(self.steps):
            if self.batch is None:
                self.fittings[0]._one_step()
                self.fittings[0].step += 1
            else:
                self.batch.advance(self.done, range(len(self.fittings)))
            self.done += 1


def measure(device: str, size: int, batches: list[int], steps: int, repeats: int,
            warmup: int) -> list[dict]:
    """One row per batch size: the batched step's time and its ratio to one fit's step."""
    config = RunConfig(size=size, device=device, calibration="none")
    total = steps * (repeats + warmup)
    variants = {"one": Fits(config, 1, steps, total)}
    variants.update({f"batch{b}": Fits(config, b, steps, total) for b in batches if b > 1})
    times = interleaved(variants, repeats, warmup, torch.device(device))
    rows = []
    for b in batches:
        name = "one" if b == 1 else f"batch{b}"
        rows.append({
            "device": _device_name(device), "size": size, "batch": b,
            "step_ms": 1e3 * statistics.median(times[name]) / steps,
            "ratio_to_one": paired_ratio(times, name, "one"),
        })
    return rows


def agreement(images: list[str], seeds: list[int], size: int, steps: int) -> list[dict]:
    """Per image and seed, the PSNR (smoothed image and predictive mean) of one fit, of the
    same fit in a batch of all ``seeds``, and of the fit without fused optimiser kernels."""
    from pyrodip import fit, fit_batch
    from pyrodip.infer import optimizers

    rows = []
    for image in images:
        configs = [RunConfig(image=image, size=size, steps=steps, seed=seed) for seed in seeds]
        observations = [prepare_observation(config) for config in configs]
        variants = {"batched": fit_batch(observations, configs, progress=False)}
        pairs = list(zip(observations, configs, strict=True))
        variants["one"] = [fit(o, c, progress=False) for o, c in pairs]
        optimizers.FUSED = False
        try:
            variants["unfused"] = [fit(o, c, progress=False) for o, c in pairs]
        finally:
            optimizers.FUSED = True
        for index, seed in enumerate(seeds):
            row = {"image": image, "seed": seed}
            for name, results in variants.items():
                result = results[index]
                row[f"{name}_psnr"] = float(result.history.curves["psnr"][-1])
                row[f"{name}_mean_psnr"] = _psnr(result)
            rows.append(row)
    return rows


def _psnr(result) -> float:
    from pyrodip.evaluate.metrics import psnr

    observation = result.observation
    return float(psnr(result.prediction.mean.clamp(0, 1), observation.truth))


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def table(rows: list[dict]) -> str:
    lines = ["| device | size | B | batched step | ratio to one fit's step | per fit |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['device']} | {row['size']} | {row['batch']} | {row['step_ms']:.1f} ms | "
            f"{row['ratio_to_one']:.2f} | {row['ratio_to_one'] / row['batch']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    parser.add_argument("--size", type=int, default=64, help="image side [64]")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16],
                        help="batch sizes B [1 4 16]")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed call [5]")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds [15]")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first [2]")
    parser.add_argument("--threads", type=int, help="torch CPU threads [torch's default]")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="print the JSON instead of the table, or write it to PATH")
    parser.add_argument("--agreement", nargs="+", metavar="IMAGE",
                        help="instead of timing: PSNR of fit, fit_batch and unfused fits of "
                        "these images (seeds 0-2, --fit-steps steps) as JSON")
    parser.add_argument("--fit-steps", type=int, default=1000, help="with --agreement [1000]")
    parser.add_argument("--smoke", action="store_true",
                        help="32 px, B = 1 2, 2 steps, 2 repetitions, 1 thread (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.batch, args.steps, args.repeats, args.warmup = 32, [1, 2], 2, 2, 1
        args.fit_steps = 2
        args.threads = 1
    if 1 not in args.batch:
        args.batch = [1, *args.batch]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.agreement:
        result = {"results": agreement(args.agreement, [0, 1, 2], args.size, args.fit_steps)}
        print(json.dumps(result, indent=2))
        return result
    with pyro.validation_enabled(False):  # as in pyrodip.fit
        rows = measure(args.device, args.size, sorted(set(args.batch)), args.steps,
                       args.repeats, args.warmup)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "results": rows}
    show(result, table(rows), args.json)
    return result


if __name__ == "__main__":
    main()
