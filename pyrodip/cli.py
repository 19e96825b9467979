"""The ``pyrodip`` command line.

``pyrodip run`` with no options denoises the embedded CT slice (pydicom's ``CT_small.dcm``)
under Gaussian noise 0.1 with the small network and mean-field VI, and writes ``result.nc``
and ``panel.png`` to a new folder under ``runs/``.

Errors in the input end the program with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .config import RunConfig
from .errors import InvalidInputError, PyrodipError

RESULT_FILES = ("result.nc", "panel.png")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyrodip", description="Bayesian Deep Image Prior with Pyro.")
    parser.add_argument("--version", action="version", version=f"pyrodip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser(
        "run",
        help="reconstruct one image",
        description="Reconstruct one image with per-pixel uncertainty. Options override "
        "the --config file, which overrides the defaults shown.",
        argument_default=argparse.SUPPRESS,
    )
    add_run_options(run)
    run.add_argument("--out", type=Path, help="output folder [a new folder under runs/]")
    run.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=run_command)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of every RunConfig setting (shared by ``run``, ``bo`` and ``compare``)."""
    d = RunConfig()
    add = parser.add_argument
    add("--config", type=Path, help="TOML file with any of the settings below")
    add("--image", help="image file (PNG, JPEG, TIFF, DICOM, NIfTI, .npy) or sample:NAME "
        f"[{d.image}]")
    add("--size", type=int, metavar="N",
        help="resize the image so that its longer side has N pixels [its own size]")
    add("--slice", type=int, dest="slice_index", metavar="N",
        help="NIfTI volumes: the slice [the middle]")
    add("--observed", action="store_true",
        help="the image is the observation itself: nothing simulated, no truth metrics")
    add("--task", help=f"denoise, superres, inpaint or ct [{d.task}]")
    add("--noise", help=f"noise model: gaussian, speckle or poisson [{d.noise}]")
    add("--noise-std", type=float, help="std of gaussian or speckle noise (ct: relative to the "
        f"largest projection) [{d.noise_std}]")
    add("--photons", type=float, help=f"poisson: expected counts at intensity 1 [{d.photons:g}]")
    add("--factor", type=int, help=f"superres: downsampling factor, 2, 4 or 8 [{d.factor}]")
    add("--mask", help=f"inpaint: mask file (255 = known), random:FRACTION, strokes or text "
        f"[{d.mask}]")
    add("--angles", type=int, help=f"ct: projections evenly over [0, 180) degrees [{d.angles}]")
    add("--method", help=f"mfvi, dip, sgld or mcdropout [{d.method}]")
    add("--net", help=f"network preset: small or paper [{d.net}]")
    add("--prior", help=f"weight prior, NAME or NAME:SCALE [{d.prior}]")
    add("--prior-scale", type=float, help=f"scale of the weight prior [{d.prior_scale}]")
    add("--layer-prior", action=_LayerPrior, dest="layer_priors", metavar="PATTERN=PRIOR",
        help="a prior for the layers whose name matches PATTERN, e.g. 'head.*=laplace:0.05' "
        "(repeatable)")
    add("--temperature", type=float,
        help=f"posterior temperature: prior variance and KL weight times T [{d.temperature:g}]")
    add("--guide", help="meanfield or map [the method's]")
    add("--kl-weight", type=float,
        help="weight of the KL term (1: the ELBO) [0.3 for mfvi, else 0]")
    add("--noise-level", help=f"the likelihood's noise level: known, learned or "
        f"heteroscedastic [{d.noise_level}]")
    add("--bayesian-batchnorm", action="store_true",
        help="make BatchNorm scales and shifts random too [off]")
    add("--init-scale", type=float, help=f"initial std of the guide [{d.init_scale}]")
    add("--init-loc", help=f"initial guide means: pytorch or normal:STD [{d.init_loc}]")
    add("--local-reparam", action="store_true",
        help="mfvi: local reparameterisation as the training gradient estimator [off]")
    add("--dropout", type=float, help="dropout rate after each conv [0.3 for mcdropout, else 0]")
    add("--optimizer", help="adam, adamw or sgd [adamw for mcdropout, else adam]")
    add("--lr", type=float, help=f"learning rate [{d.lr}]")
    add("--weight-decay", type=float,
        help="decoupled weight decay [1e-4 for mcdropout, else 0]")
    add("--sgld", help=f"sgld variant: adam (the papers') or textbook [{d.sgld}]")
    add("--burn-in", type=int, help="sgld: steps before sampling [min(7000, steps / 2)]")
    add("--sample-every", type=int,
        help=f"sgld: steps between posterior samples [{d.sample_every}]")
    add("--steps", type=int, help=f"fitting steps [{d.steps}]")
    add("--samples", type=int, help=f"posterior samples for the predictive [{d.samples}]")
    add("--ema", type=float, help=f"smoothing of the tracked image [{d.ema}]")
    add("--jitter", type=float, help=f"std of the input noise jitter per step [{d.jitter}]")
    add("--device", help=f"cpu, cuda or cuda:N [{d.device}]")
    add("--engine", help=f"loss computation: auto, pyro or fast [{d.engine}]")
    add("--seed", type=int, help=f"random seed [{d.seed}]")


class _LayerPrior(argparse.Action):
    """Collects repeated ``--layer-prior PATTERN=PRIOR`` options into a dict."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        pattern, equals, spec = value.partition("=")
        if not equals or not pattern or not spec:
            parser.error(f"{option_string} takes PATTERN=PRIOR, e.g. 'head.*=laplace:0.05'")
        priors = dict(getattr(namespace, self.dest, None) or {})
        priors[pattern] = spec
        setattr(namespace, self.dest, priors)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.handler(args)
    except PyrodipError as error:
        print(f"pyrodip: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrodip: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pyrodip: warning: {message}", file=sys.stderr)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the --config file, then the options given on the command line."""
    fields = {field.name for field in dataclasses.fields(RunConfig)}
    overrides = {key: value for key, value in vars(args).items() if key in fields}
    if "config" in args:
        return RunConfig.from_toml(args.config, **overrides)
    return RunConfig(**overrides)


def prepare_output(out: Path | None, method: str, overwrite: bool) -> Path:
    """Create (or check) the output folder before any work is done."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{method}"
        suffix = 1
        while out.exists():
            suffix += 1
            out = Path("runs") / f"{stamp}-{method}-{suffix}"
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output path {out} is a file: choose a folder with --out")
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise InvalidInputError(
            f"{out} already holds a result ({existing[0]}): choose another --out or "
            "pass --overwrite"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".pyrodip-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise InvalidInputError(
            f"output folder {out} is not writable ({error.strerror}): choose another --out"
        ) from None
    return out


def run_command(args: argparse.Namespace) -> int:
    # Heavy imports here, so that --help and input errors answer at once.
    from .inference import fit, resolve_device
    from .observation import prepare_observation
    from .plots import plot_panel
    from .results import to_dataset, write_dataset

    config = config_from_args(args)
    resolve_device(config.device)
    observation = prepare_observation(config)
    out = prepare_output(args.__dict__.get("out"), config.method, "overwrite" in args)
    quiet = "quiet" in args
    result = fit(observation, config, progress=not quiet)
    dataset = to_dataset(result)
    write_dataset(dataset, out / "result.nc")
    plot_panel(dataset, out / "panel.png")
    print(summary(dataset, out))
    return 0


def summary(dataset, out: Path) -> str:
    """A few lines: what ran, the PSNRs, the uncertainty and the time."""
    a = dataset.attrs
    channels, height, width = (dataset.sizes[d] for d in ("channel", "y", "x"))
    lines = [
        f"pyrodip {a['task']}: {a['image']} ({channels}x{height}x{width}), {a['method']} "
        f"({a['guide']} guide, prior {a['prior']}), {a['steps']} steps",
    ]
    if "psnr_input" in a:
        psnr_in, ssim_in = a["psnr_input"], a["ssim_input"]
        lines.append(f"  observation     PSNR {psnr_in:6.2f} dB  SSIM {ssim_in:.3f}")
    if "psnr" in a:
        gain = f"  ({a['psnr'] - a['psnr_input']:+.2f} dB)" if "psnr_input" in a else ""
        lines.append(f"  reconstruction  PSNR {a['psnr']:6.2f} dB  SSIM {a['ssim']:.3f}{gain}")
    if "baseline_psnr" in a:
        lines.append(
            f"  baseline        PSNR {a['baseline_psnr']:6.2f} dB  SSIM {a['baseline_ssim']:.3f}"
            f"  ({a['baseline']})"
        )
    if "psnr_missing" in a:
        lines.append(
            f"  missing pixels  PSNR {a['psnr_missing']:6.2f} dB (baseline "
            f"{a['baseline_psnr_missing']:.2f} dB)"
        )
    lines.append(
        f"  mean uncertainty (std) {a['mean_std_total']:.4f} from {a['samples']} samples"
    )
    lines.append(f"  time {a['wall_time_s']:.1f} s; wrote {out / 'result.nc'} and panel.png")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
