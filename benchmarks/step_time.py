"""Step time of pyrodip against the plain-PyTorch formulations it replaces.

Times, in one process, interleaved (each repetition runs every variant once, in a rotating
order) after warm-up:

- ``pyrodip``: one MFVI step as users get it: ``RunConfig()``'s settings (mean-field guide,
  temperature, prior, Adam, input jitter), the loss from ``make_loss(engine="auto")``;
- ``reference``: the MIDL 2021 paper's formulation in plain PyTorch: the same skip network
  with mean-field conv layers trained by the local reparameterisation trick (two convolutions
  per layer: the mean and the variance of the pre-activations), the closed-form KL, AdamW;
- ``dip``: a plain DIP step (ordinary convs, Adam, MSE): the floor;
- ``laplace``: pyrodip's MFVI step with a Laplace prior instead of the Normal one (its KL in
  closed form through ``torch.distributions.kl_divergence``), reported against ``pyrodip``;
- the posterior predictive of ``--samples`` images: ``pyrodip.predict`` against a plain loop
  that draws the weights into a plain network and sums images and squares;
- on CUDA, ``captured`` and ``dip_captured``: the pyrodip and DIP steps recorded as CUDA
  graphs and replayed (:mod:`pyrodip.infer.capture`, what ``--capture`` runs), and
  ``busy_ms``: the device's kernel time per captured pyrodip step (``torch.profiler``).

Ratios are medians over repetitions of the ratio of the times measured side by side, so load
from other processes that comes and goes hits both sides of each pair.

Usage::

    python benchmarks/step_time.py                   # CPU: small preset, 64 and 128 pixels
    python benchmarks/step_time.py --device cuda     # adds the paper preset at 256 pixels
    python benchmarks/step_time.py --json            # the JSON instead of the table
    python benchmarks/step_time.py --json out.json   # the table, and the JSON in a file
    python benchmarks/step_time.py --preset small --size 128 --channels 16 64   # a sweep
    python benchmarks/step_time.py --smoke           # tiny sizes, 2 repetitions (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable

import pyro
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyrodip import BayesianDIP, GaussianLikelihood, NetConfig, RunConfig, make_guide, predict
from pyrodip.bayes.networks import SkipNet
from pyrodip.infer.capture import WARMUP_STEPS, CapturedStep
from pyrodip.infer.elbo import make_loss
from pyrodip.infer.optimizers import make_optimizer
from pyrodip.io.files import atomic_path

KEYS = (
    "preset", "size", "device", "pyrodip_ms", "reference_ms", "dip_ms", "ratio_reference",
    "ratio_dip", "ratio_laplace", "predictive_ratio", "peak_mem_mb",
)
#: (preset, image side) run by default; the paper preset only on a GPU.
CPU_CASES = (("small", 64), ("small", 128))
GPU_CASES = (*CPU_CASES, ("paper", 256))
NOISE_STD = 0.1
#: The paper's settings for its reference step.
REFERENCE_LR = 5e-3
REFERENCE_KL_WEIGHT = 1e-6
REFERENCE_PRIOR_STD = 0.05
REFERENCE_JITTER = 0.1


# --- the three training steps ----------------------------------------------------------------


class PyrodipStep:
    """pyrodip's MFVI step with ``RunConfig()``'s settings."""

    def __init__(self, net: NetConfig, y: Tensor, config: RunConfig,
                 capturable: bool = False) -> None:
        self.model = BayesianDIP(
            tuple(y.shape[1:]),
            net=net,
            prior=f"{config.prior}:{config.prior_scale}",
            likelihood=GaussianLikelihood(NOISE_STD),
            temperature=config.resolved("temperature"),
            jitter=config.jitter,
        ).to(y.device)
        self.guide = make_guide(
            config.resolved("guide"), self.model, init_loc=config.resolved("init_loc"),
            init_scale=config.resolved("init_scale"),
        ).to(y.device)
        self.loss_fn = make_loss(self.model, self.guide, config.engine)
        self.optimizer = make_optimizer(
            self.loss_fn.named_parameters(), config.resolved("optimizer"), config.resolved("lr"),
            config.resolved("weight_decay"), capturable,
        )
        self.y = y
        self.model.train()

    def __call__(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.y)
        loss.backward()
        self.optimizer.step()
        return loss


class LocalReparamConv(nn.Module):
    """A mean-field Normal conv layer (weight and bias) trained by local reparameterisation:
    the pre-activation is N(conv(x, mu), conv(x^2, sigma^2)), drawn per output pixel."""

    def __init__(self, conv: nn.Conv2d, init_scale: float) -> None:
        super().__init__()
        rho = math.log(math.expm1(init_scale))
        # The paper's convs all have a bias (pyrodip's lose it before a BatchNorm).
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        self.weight_mu = nn.Parameter(conv.weight.detach().clone())
        self.bias_mu = nn.Parameter(bias.detach().clone())
        self.weight_rho = nn.Parameter(torch.full_like(conv.weight, rho))
        self.bias_rho = nn.Parameter(torch.full_like(bias, rho))
        self.stride = conv.stride
        pad = conv.kernel_size[0] // 2
        self.pad, self.padding_mode = (pad,) * 4, conv.padding_mode

    def forward(self, x: Tensor) -> Tensor:
        if self.pad[0]:
            x = F.pad(x, self.pad, mode=self.padding_mode)
        mean = F.conv2d(x, self.weight_mu, self.bias_mu, self.stride)
        weight_var = F.softplus(self.weight_rho) ** 2
        bias_var = F.softplus(self.bias_rho) ** 2
        var = F.conv2d(x * x, weight_var, bias_var, self.stride)
        return mean + torch.sqrt(var + 1e-16) * torch.randn_like(mean)

    def kl(self, prior_std: float) -> Tensor:
        """KL(q || N(0, prior_std^2)) in closed form, summed over weights and biases."""
        total = 0.0
        for mu, rho in ((self.weight_mu, self.weight_rho), (self.bias_mu, self.bias_rho)):
            var_ratio = (F.softplus(rho) / prior_std) ** 2
            total = total + 0.5 * (var_ratio + (mu / prior_std) ** 2 - 1 - var_ratio.log()).sum()
        return total


def replace_convs(module: nn.Module, make: Callable[[nn.Conv2d], nn.Module]) -> None:
    """Replace every ``nn.Conv2d`` below ``module`` by ``make(conv)``, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, make(child))
        else:
            replace_convs(child, make)


class ReferenceStep:
    """The MIDL paper's MFVI step in plain PyTorch: MSE + 1e-6 KL, AdamW."""

    def __init__(self, net: NetConfig, y: Tensor, init_scale: float) -> None:
        self.net = SkipNet(y.shape[1], net)
        replace_convs(self.net, lambda conv: LocalReparamConv(conv, init_scale))
        self.net.to(y.device)
        self.layers = [m for m in self.net.modules() if isinstance(m, LocalReparamConv)]
        self.z = 0.1 * torch.rand(1, net.input_channels, *y.shape[2:], device=y.device)
        self.y = y
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=REFERENCE_LR)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        z = self.z + REFERENCE_JITTER * torch.randn_like(self.z)
        image = torch.sigmoid(self.net(z))
        kl = sum(layer.kl(REFERENCE_PRIOR_STD) for layer in self.layers)
        loss = F.mse_loss(image, self.y) + REFERENCE_KL_WEIGHT * kl
        loss.backward()
        self.optimizer.step()


class DIPStep:
    """A plain DIP step: point-estimate weights, MSE, Adam."""

    def __init__(self, net: NetConfig, y: Tensor, lr: float, jitter: float,
                 capturable: bool = False) -> None:
        self.net = SkipNet(y.shape[1], net).to(y.device)
        self.z = 0.1 * torch.rand(1, net.input_channels, *y.shape[2:], device=y.device)
        self.y, self.jitter = y, jitter
        self.optimizer = make_optimizer(self.net.named_parameters(), "adam", lr,
                                        capturable=capturable)

    def __call__(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        z = self.z + self.jitter * torch.randn_like(self.z)
        loss = F.mse_loss(torch.sigmoid(self.net(z)), self.y)
        loss.backward()
        self.optimizer.step()
        return loss


# --- the posterior predictive -------------------------------------------------------------------


class PlainPredictive:
    """The posterior predictive of a pyrodip model and mean-field guide as a plain loop: draw
    each conv's weights into a plain SkipNet, render, sum the images and their squares."""

    def __init__(self, model: BayesianDIP, guide) -> None:
        self.net = SkipNet(model.image_shape[0], model.net_config).to(model.z.device)
        params = dict(self.net.named_parameters())
        with torch.no_grad():
            for name, param in model.net.named_parameters():  # BatchNorm
                params[name].copy_(param)
        self.sites = [(params[site.removeprefix("net.")], site) for site in model.weight_sites]
        self.guide, self.z = guide, model.z

    @torch.no_grad()
    def __call__(self, samples: int) -> tuple[Tensor, Tensor]:
        draws = [(param, self.guide.loc(site), self.guide.scale(site))
                 for param, site in self.sites]
        total = square = 0.0
        for _ in range(samples):
            for param, loc, scale in draws:
                param.copy_(loc).addcmul_(scale, torch.randn_like(loc))
            image = torch.sigmoid(self.net(self.z))
            total, square = total + image, square + image * image
        mean = total / samples
        return mean, (square / samples - mean**2).clamp_min(0).sqrt()


# --- timing -------------------------------------------------------------------------------------


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each variant: ``warmup`` untimed rounds, then ``repeats`` rounds
    that each time every variant once, starting from a different one each round."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            _sync(device)
            start = time.perf_counter()
            variants[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of numerator time / denominator time."""
    pairs = zip(times[numerator], times[denominator], strict=True)
    return statistics.median(a / b for a, b in pairs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_busy_ms(step: Callable[[], object], device: torch.device, steps: int = 5) -> float:
    """The device's kernel time per call of ``step`` (CUDA), from ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    _sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        _sync(device)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.device_time for e in kernels) / 1e3 / steps


def _peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA), else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def benchmark(
    preset: str, size: int, device: torch.device, repeats: int, warmup: int, samples: int,
    predictive_repeats: int, channels: int | None = None, engine: str = "auto",
) -> dict:
    """One row of the results: the three steps and the predictive at one preset and size."""
    net = NetConfig.preset(preset)
    if channels is not None:
        net = NetConfig.preset(preset, channels_down=channels, channels_up=channels)
    config = RunConfig(net=preset, engine=engine)
    torch.manual_seed(0)
    y = torch.rand(1, 1, size, size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pyrodip_step = PyrodipStep(net, y, config)
    steps = {
        "pyrodip": pyrodip_step,
        "reference": ReferenceStep(net, y, config.resolved("init_scale")),
        "dip": DIPStep(net, y, config.resolved("lr"), config.jitter),
        "laplace": PyrodipStep(net, y, config.replace(prior="laplace")),
    }
    if device.type == "cuda":
        steps["captured"] = CapturedStep(PyrodipStep(net, y, config, capturable=True), device,
                                         "fast")
        steps["dip_captured"] = CapturedStep(
            DIPStep(net, y, config.resolved("lr"), config.jitter, capturable=True), device,
            "fast")
        warmup = max(warmup, WARMUP_STEPS + 1)  # each graph recorded before the timing
    step_times = interleaved(steps, repeats, warmup, device)
    model, guide = pyrodip_step.model, pyrodip_step.guide
    plain = PlainPredictive(model, guide)
    predictive = {
        "pyrodip": lambda: predict(model, guide, num_samples=samples),
        "plain": lambda: plain(samples),
    }
    predictive_times = interleaved(predictive, predictive_repeats, min(warmup, 1), device)
    captured = {}
    if device.type == "cuda":
        captured = {
            "captured_ms": 1e3 * statistics.median(step_times["captured"]),
            "dip_captured_ms": 1e3 * statistics.median(step_times["dip_captured"]),
            "ratio_captured": paired_ratio(step_times, "captured", "pyrodip"),
            "ratio_captured_dip": paired_ratio(step_times, "captured", "dip_captured"),
            "busy_ms": device_busy_ms(steps["captured"], device),
        }
    return {
        "preset": preset,
        "size": size,
        "channels": net.per_scale("channels_down")[0],
        "device": str(device),
        "engine": engine,
        "threads": torch.get_num_threads(),
        "pyrodip_ms": 1e3 * statistics.median(step_times["pyrodip"]),
        "reference_ms": 1e3 * statistics.median(step_times["reference"]),
        "dip_ms": 1e3 * statistics.median(step_times["dip"]),
        "ratio_reference": paired_ratio(step_times, "pyrodip", "reference"),
        "ratio_dip": paired_ratio(step_times, "pyrodip", "dip"),
        "ratio_laplace": paired_ratio(step_times, "laplace", "pyrodip"),
        "predictive_ms": 1e3 * statistics.median(predictive_times["pyrodip"]),
        "plain_predictive_ms": 1e3 * statistics.median(predictive_times["plain"]),
        "predictive_ratio": paired_ratio(predictive_times, "pyrodip", "plain"),
        "peak_mem_mb": _peak_memory_mb(device),
        **captured,
    }


def table(rows: list[dict]) -> str:
    header = (f"{'preset':<7}{'size':>5}{'ch':>5} {'device':<7}{'pyrodip':>10}{'reference':>11}"
              f"{'dip':>9}{'/ref':>7}{'/dip':>7}{'lap/N':>7}{'pred':>7}{'peak MB':>9}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['preset']:<7}{r['size']:>5}{r['channels']:>5} {r['device']:<7}"
            f"{r['pyrodip_ms']:>8.1f}ms{r['reference_ms']:>9.1f}ms{r['dip_ms']:>7.1f}ms"
            f"{r['ratio_reference']:>7.2f}{r['ratio_dip']:>7.2f}{r['ratio_laplace']:>7.2f}"
            f"{r['predictive_ratio']:>7.2f}"
            f"{r['peak_mem_mb']:>9.0f}"
        )
    captured = [r for r in rows if "captured_ms" in r]
    if captured:
        lines += ["", f"{'preset':<7}{'size':>5} {'captured':>10}{'DIP captured':>14}"
                  f"{'busy':>9}{'/ uncaptured':>13}{'/ DIP captured':>15}{'/ busy':>8}"]
        for r in captured:
            lines.append(
                f"{r['preset']:<7}{r['size']:>5} {r['captured_ms']:>8.2f}ms"
                f"{r['dip_captured_ms']:>12.2f}ms{r['busy_ms']:>7.2f}ms"
                f"{r['ratio_captured']:>13.2f}{r['ratio_captured_dip']:>15.2f}"
                f"{r['captured_ms'] / r['busy_ms']:>8.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    parser.add_argument("--preset", choices=("small", "paper"),
                        help="only this network preset (with --size)")
    parser.add_argument("--size", type=int, nargs="+", help="image sides (with --preset)")
    parser.add_argument("--channels", type=int, nargs="+",
                        help="override the preset's channels per scale (a sweep)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per step [30]")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first [5]")
    parser.add_argument("--samples", type=int, default=25, help="predictive samples [25]")
    parser.add_argument("--predictive-repeats", type=int, default=10,
                        help="timed rounds of the predictive [10]")
    parser.add_argument("--threads", type=int, help="torch CPU threads [torch's default]")
    parser.add_argument("--engine", choices=("auto", "pyro", "fast"), default="auto",
                        help="pyrodip's loss computation [auto, as users get it]")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="write {'results': [...]} to PATH, or print it instead of the table")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and 2 repetitions: checks that the benchmark runs")
    args = parser.parse_args(argv)
    if (args.preset is None) != (args.size is None):
        parser.error("--preset and --size go together")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available: use --device cpu")
    if args.smoke:  # plumbing, not speed: one thread is quickest on a busy machine
        cases = [("small", 32)]
        args.channels, args.threads = args.channels or [8], args.threads or 1
        args.repeats, args.warmup, args.predictive_repeats, args.samples = 2, 1, 2, 3
    elif args.preset is not None:
        cases = [(args.preset, size) for size in args.size]
    else:
        cases = list(GPU_CASES if device.type == "cuda" else CPU_CASES)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with pyro.validation_enabled(False):  # as in pyrodip.fit
        for preset, size in cases:
            for channels in args.channels or [None]:
                rows.append(benchmark(
                    preset, size, device, args.repeats, args.warmup, args.samples,
                    args.predictive_repeats, channels, args.engine,
                ))
    result = {"results": rows}
    show(result, table(rows), args.json)
    return result


def show(result: dict, text: str, json_path: str | None) -> None:
    """Print ``text`` (and write the JSON of ``result`` to ``json_path``), or print the JSON
    alone when ``json_path`` is "-"."""
    if json_path == "-":
        print(json.dumps(result, indent=2))
        return
    print(text)
    if json_path:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
