"""The ``pyrodip`` command line.

``pyrodip run`` with no options denoises the embedded CT slice (pydicom's ``CT_small.dcm``)
under Gaussian noise 0.1 with the small network and mean-field VI, and writes ``result.nc``
and ``panel.png`` to a new folder under ``runs/``.

Errors in the input end the program with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import threading
import time
import tomllib
import warnings
from pathlib import Path

from . import __version__
from .errors import InvalidInputError, PyrodipError
from .studies.config import RunConfig

RESULT_FILES = ("result.nc", "panel.png")
CHECKPOINT = "checkpoint.pt"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"pyrodip: error: {one_line(message)} (see {self.prog} --help)\n")


#: Characters that would break a message into several lines, and how they are shown instead.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (a path may hold one), so a message stays one line.

    >>> one_line("no file a\\nb.png")
    'no file a\\\\nb.png'
    """
    return text.translate(_LINE_BREAKS)


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
    run.add_argument("--checkpoint-every", type=int, metavar="N",
                     help="save the fit's state every N steps [every 5 minutes]")
    run.add_argument("--resume", type=Path, metavar="DIR",
                     help="continue the interrupted run in DIR from its checkpoint")
    run.add_argument("--prior-from", type=Path, metavar="BO_NC",
                     help="take the best settings of a study (its bo.nc or folder); options "
                     "given here win over it, it wins over --config")
    run.set_defaults(handler=run_command)
    add_bo_parser(commands)
    compare = commands.add_parser(
        "compare",
        help="compare methods over images and seeds",
        description="Run every method on every image with every seed of a study file (TOML, "
        "see docs/methods.md); write each run, the stacked comparison.nc, table.md and "
        "figures to --out. Runs already in --out are kept, so an interrupted study continues.",
    )
    compare.add_argument("study", type=Path, help="the study file (TOML)")
    compare.add_argument("--out", type=Path, required=True, help="output folder")
    compare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         dest="overrides", help="a run setting for every run, over the study "
                         "file's (repeatable), e.g. --set steps=200")
    compare.add_argument("--workers", type=int, metavar="N",
                         help="fit N runs at once on a local Dask cluster [one at a time]")
    compare.add_argument("--scheduler", metavar="ADDRESS",
                         help="fit the runs on this Dask scheduler (image paths must be "
                         "readable by its workers)")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.set_defaults(handler=compare_command)
    report = commands.add_parser(
        "report",
        help="print the comparison table of saved results",
        description="Print the comparison table of comparison.nc or result.nc files (or "
        "folders holding them).",
    )
    report.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    report.set_defaults(handler=report_command)
    return parser


def compare_command(args: argparse.Namespace) -> int:
    from .io.files import atomic_path
    from .plots import comparison_figures
    from .studies.compare import Comparison, run_comparison, summary_table

    comparison = Comparison.from_toml(args.study).with_settings(**parse_settings(args.overrides))
    out = prepare_output(args.out, "compare", overwrite=True)
    with contextlib.ExitStack() as stack:
        executor = None
        if args.workers is not None or args.scheduler is not None:
            from .studies.execution import dask_executor

            device = comparison.settings.get("device", "cpu")
            executor = stack.enter_context(dask_executor(args.scheduler, args.workers, device))
        dataset = run_comparison(comparison, out, progress=not args.quiet, executor=executor)
    table = summary_table(dataset)
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(table + "\n")
    figures = comparison_figures(dataset, out)
    print(table)
    print(f"wrote {out / 'comparison.nc'}, table.md and {len(figures)} figures")
    return 0


def parse_settings(texts: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` texts as settings, each VALUE read as a TOML value (a number, true, ...)
    or else taken as a string.

    >>> parse_settings(["steps=200", "prior=laplace:0.05", "observed=true"])
    {'steps': 200, 'prior': 'laplace:0.05', 'observed': True}
    """
    settings: dict[str, object] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--set takes KEY=VALUE, e.g. steps=200, got {text!r}")
        try:
            settings[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            settings[key.strip()] = value
    return settings


def report_command(args: argparse.Namespace) -> int:
    from .studies.compare import load_results, summary_table

    print(summary_table(load_results(args.paths)))
    return 0


def add_bo_parser(commands) -> None:
    """``pyrodip bo``: the options of a study (see :mod:`pyrodip.studies.bo`) and run's."""
    from .studies.bo import OBJECTIVES, Study

    d = Study()
    bo = commands.add_parser(
        "bo",
        help="tune settings (the prior scale) by Bayesian optimisation",
        description="Tune run settings by Bayesian optimisation (BoTorch): an initial design, "
        "then rounds of candidates from a GP, each trial a fit run on Dask. The fits take "
        "run's options (and --config).",
        argument_default=argparse.SUPPRESS,
    )
    add = bo.add_argument
    add("--param", action="append", dest="params", metavar="NAME=LOW:HIGH[:log]",
        help="a setting to tune and its range, searched in log10 with :log (repeatable) "
        f"[{' '.join(p.spec() for p in d.params)}]")
    add("--objective", help=f"{', '.join(OBJECTIVES)} [{d.objective}]")
    add("--init-points", type=int, metavar="N", help=f"initial Sobol design [{d.init_points}]")
    add("--init", action="append", metavar="V[,V...]",
        help="an initial point instead of the Sobol design, a value per --param (repeatable)")
    add("--rounds", type=int, help=f"rounds of candidates after the initial design [{d.rounds}]")
    add("--batch", type=int, metavar="Q", help=f"candidates per round = trials run at once "
        f"[{d.batch}]")
    add("--out", type=Path, help="study folder [a new folder under runs/]")
    add("--resume", type=Path, metavar="DIR",
        help="continue the interrupted study in DIR (--rounds: to a new number of rounds)")
    add("--scheduler", metavar="ADDRESS", help="run the trials on this Dask scheduler "
        "[a local cluster]")
    add("--workers", type=int, metavar="N",
        help="workers of the local cluster [one per GPU with --device cuda, else min(Q, cores)]")
    add("--quiet", action="store_true", help="no progress bar")
    add_run_options(bo)
    bo.set_defaults(handler=bo_command)


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
    add("--prior", help="weight prior NAME[:SCALE[:ARGS]]: normal, fanin, laplace, studentt[:DF], "
        f"mixture[:PI[:RATIO]] [{d.prior}]")
    add("--prior-scale", type=float, help=f"scale of the weight prior [{d.prior_scale}]")
    add("--layer-prior", action=_LayerPrior, dest="layer_priors", metavar="PATTERN=PRIOR",
        help="a prior for the layers whose name matches PATTERN, e.g. 'net.head.*=laplace:0.05' "
        "(repeatable)")
    add("--temperature", type=float,
        help=f"posterior temperature: prior variance and KL weight times T [{d.temperature:g}]")
    add("--guide", help="meanfield, map, lowrank:RANK or partial:PATTERNS [the method's]")
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
            parser.error(f"{option_string} takes PATTERN=PRIOR, e.g. 'net.head.*=laplace:0.05'")
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
        print(f"pyrodip: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrodip: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pyrodip: warning: {one_line(str(message))}", file=sys.stderr)


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
    if (out / CHECKPOINT).exists() and not overwrite:
        raise InvalidInputError(
            f"{out} holds an interrupted run: continue it with --resume {out}, or pass "
            "--overwrite to start afresh"
        )
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
    from .infer.loop import Checkpointing, Interrupted, fit, resolve_device
    from .io.results import to_dataset, write_dataset
    from .physics.observation import prepare_observation
    from .plots import plot_panel

    resume = args.__dict__.get("resume")
    if resume is not None:
        config, out = resumed_config(args)
    else:
        config = config_from_args(args)
        if "prior_from" in args:
            config = settings_from_study(config, args)
    resolve_device(config.device)
    observation = prepare_observation(config)
    if resume is None:
        out = prepare_output(args.__dict__.get("out"), config.method, "overwrite" in args)
    every = args.__dict__.get("checkpoint_every")
    if every is not None and every < 1:
        raise InvalidInputError(f"--checkpoint-every must be a positive integer, got {every}")
    checkpoint = Checkpointing(out / CHECKPOINT, every_steps=every)
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            result = fit(
                observation, config, progress="quiet" not in args, checkpoint=checkpoint,
                resume=resume is not None, stop=stop,
            )
    except Interrupted as interrupted:
        print(
            f"pyrodip: {interrupted}: continue with pyrodip run --resume {out}", file=sys.stderr
        )
        return 143 if stop.signal == signal.SIGTERM else 130
    dataset = to_dataset(result)
    write_dataset(dataset, out / "result.nc")
    plot_panel(dataset, out / "panel.png")
    checkpoint.path.unlink(missing_ok=True)
    print(summary(dataset, out))
    if result.status == "diverged":
        print(f"pyrodip: error: the fit diverged and stopped early; kept what it had in {out}",
              file=sys.stderr)
        return 1
    return 0


def settings_from_study(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """``config`` with the best settings of the study ``--prior-from`` names, but for the
    settings given as options."""
    from .studies.bo import best_parameters

    best = best_parameters(args.prior_from)
    taken = {key: value for key, value in best.items() if key not in args}
    if taken:
        settings = ", ".join(f"{key}={value:.4g}" for key, value in taken.items())
        print(f"pyrodip: from {args.prior_from}: {settings}", file=sys.stderr)
    return config.replace(**taken)


def bo_command(args: argparse.Namespace) -> int:
    from .studies import bo
    from .studies.execution import dask_executor

    start = time.perf_counter()
    if "resume" in args:
        kept = ("command", "handler", "resume", "rounds", "scheduler", "workers", "quiet")
        given = [key for key in vars(args) if key not in kept]
        if given:
            option = "--" + given[0].replace("_", "-").replace("params", "param")
            raise InvalidInputError(
                f"--resume takes the study's settings from its study.json: drop {option}"
            )
        folder = args.resume
        study = bo.load_study(folder)
    else:
        config = config_from_args(args)
        for key in ("image", "mask"):  # workers may run elsewhere: name files absolutely
            if Path(getattr(config, key)).is_file():
                config = config.replace(**{key: str(Path(getattr(config, key)).resolve())})
        d = bo.Study()
        study = bo.Study(
            params=tuple(map(bo.Param.parse, args.params)) if "params" in args else d.params,
            objective=args.__dict__.get("objective", d.objective),
            config=config,
            init_points=args.__dict__.get("init_points", d.init_points),
            init=bo.parse_init(args.__dict__.get("init", ())),
            rounds=args.__dict__.get("rounds", d.rounds),
            batch=args.__dict__.get("batch", d.batch),
            seed=config.seed,
        )
        bo.FitObjective(config, study.objective).check()
        folder = prepare_output(args.__dict__.get("out"), "bo", overwrite=False)
        bo.create_study(study, folder)
    try:
        with dask_executor(
            args.__dict__.get("scheduler"), args.__dict__.get("workers"), study.config.device,
            concurrency=study.batch,
        ) as executor:
            dataset = bo.resume(
                folder, rounds=args.__dict__.get("rounds"), executor=executor,
                progress="quiet" not in args,
            )
    except KeyboardInterrupt:
        print(f"pyrodip: interrupted: continue with pyrodip bo --resume {folder}",
              file=sys.stderr)
        return 130
    print(bo.summary(dataset, folder, time.perf_counter() - start))
    return 0


def resumed_config(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    """The settings and folder of the interrupted run that ``--resume DIR`` names."""
    from .infer.loop import read_checkpoint

    allowed = ("command", "handler", "resume", "quiet", "checkpoint_every")
    given = [key for key in vars(args) if key not in allowed]
    if given:
        option = "--" + given[0].replace("_", "-")
        raise InvalidInputError(
            f"--resume takes every setting from the checkpoint: drop {option}"
        )
    out = args.resume
    state = read_checkpoint(out / CHECKPOINT)
    return RunConfig(**json.loads(state["config"])), out


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """While fitting, SIGTERM (e.g. SLURM preemption) and SIGINT set ``stop`` (recording
    which signal as ``stop.signal``): the fit then saves a checkpoint and ends."""
    stop.signal = None

    def handler(signum, frame) -> None:
        stop.signal = signum
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
