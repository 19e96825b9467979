"""What the ``pyrodip`` commands do, once :mod:`pyrodip.cli` has read their options.

>>> parse_settings(["steps=200", "prior=laplace:0.05", "observed=true"])
{'steps': 200, 'prior': 'laplace:0.05', 'observed': True}
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path

from ..errors import InvalidInputError
from ..run.config import RunConfig, read_toml

RESULT_FILES = ("result.nc", "panel.png")
CHECKPOINT = "checkpoint.pt"


def compare_command(args: argparse.Namespace) -> int:
    from ..infer.checkpoints import Interrupted
    from ..io.files import atomic_path
    from ..plots import comparison_figures
    from ..studies.compare import Comparison, check_batch, run_comparison, summary_table

    comparison = Comparison.from_toml(args.study)
    settings = parse_settings(args.overrides)
    if args.plugins:  # every run names them, so that workers import them too
        given = settings.get("plugins", comparison.settings.get("plugins", []))
        settings["plugins"] = list(dict.fromkeys([*given, *args.plugins]))
    comparison = comparison.with_settings(**settings)
    batch = check_batch(comparison, batch_option(args.batch))
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise InvalidInputError(
            f"--checkpoint-every must be a positive integer, got {args.checkpoint_every}")
    out = prepare_output(args.out, "compare", overwrite=True)
    again = f"continue with the same command (pyrodip compare {args.study} --out {out} ...)"
    stop = threading.Event()
    try:
        with contextlib.ExitStack() as stack:
            executor = study_executor(stack, stop, args.scheduler, args.workers,
                                      comparison.settings.get("device", "cpu"))
            dataset = run_comparison(
                comparison, out, progress=not args.quiet, executor=executor, batch=batch,
                retry_failed=args.retry_failed, checkpoint_every=args.checkpoint_every,
                stop=stop,
            )
    except (KeyboardInterrupt, Interrupted) as interrupted:
        print(f"pyrodip: {interrupted or 'interrupted'}: {again}", file=sys.stderr)
        return 143 if stop.signal == signal.SIGTERM else 130
    table = summary_table(dataset)
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(table + "\n")
    figures = comparison_figures(dataset, out)
    print(table)
    print(f"wrote {out / 'comparison.nc'}, table.md and {len(figures)} figures")
    failed = int((dataset["status"] == "failed").sum())
    if failed:
        print(f"pyrodip: error: {failed} of {dataset['status'].size} runs failed (listed under "
              "the table); run them again with --retry-failed", file=sys.stderr)
        return 1
    return 0


def batch_option(text: str) -> int | str:
    """``--batch``: ``auto`` or an integer (:func:`~pyrodip.studies.compare.check_batch`
    checks it).

    >>> batch_option("4"), batch_option("auto")
    (4, 'auto')
    """
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(
            f"--batch must be a positive integer or auto, got {text!r}"
        ) from None


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
    from ..studies.compare import load_results, summary_table

    print(summary_table(load_results(args.paths)))
    return 0


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the --config file, then the options given on the command line."""
    fields = {field.name for field in dataclasses.fields(RunConfig)}
    overrides = {key: value for key, value in vars(args).items() if key in fields}
    if "config" in args:
        if "plugins" in overrides:  # --plugin adds to the file's plugins
            in_file = read_toml(args.config, "config file").get("plugins", [])
            if isinstance(in_file, list):
                overrides["plugins"] = list(dict.fromkeys([*in_file, *overrides["plugins"]]))
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
    if out.is_dir():
        from ..io.files import finish_result_set

        finish_result_set(out)  # a set whose writer was killed while it moved it into place
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
    from ..infer.checkpoints import Checkpointing, Interrupted
    from ..run.fit import fit, resolve_device
    from ..run.observe import prepare_observation
    from ..run.results import to_dataset, write_result
    from ..studies.volume import VOLUME_FILE

    resume = args.__dict__.get("resume")
    if "slices" in args or (resume is not None and (resume / VOLUME_FILE).exists()):
        return volume_command(args)
    for option in ("batch", "workers"):
        if option in args:
            raise InvalidInputError(f"--{option} fits the slices of a volume: add --slices")
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
    scanner = write_result(dataset, out, config)
    checkpoint.path.unlink(missing_ok=True)
    print(summary(dataset, out))
    if scanner:
        print(scanner)
    if result.status == "diverged":
        print(f"pyrodip: error: the fit diverged and stopped early; kept what it had in {out}",
              file=sys.stderr)
        return 1
    return 0


def volume_command(args: argparse.Namespace) -> int:
    """``pyrodip run --slices``: a volume's slices, each an independent fit
    (:mod:`pyrodip.studies.volume`)."""
    from ..infer.checkpoints import Interrupted
    from ..io.volumes import read_volume
    from ..run.fit import resolve_device
    from ..run.observe import prepare_observation
    from ..run.results import write_result
    from ..studies.compare import batch_size
    from ..studies.volume import (
        VOLUME_FILE,
        load_volume_settings,
        reconstruct_volume,
        save_volume_settings,
        slice_range,
        volume_config,
    )

    resume = args.__dict__.get("resume")
    if resume is not None:
        allowed = ("command", "handler", "resume", "quiet", "batch", "workers")
        given = [key for key in vars(args) if key not in allowed]
        if given:
            raise InvalidInputError(
                f"--resume takes the volume's settings from its {VOLUME_FILE}: drop "
                f"--{given[0].replace('_', '-')}"
            )
        config, slices = load_volume_settings(resume)
        out = resume
        volume = read_volume(config.image, config.volume_index)
    else:
        config = config_from_args(args)
        if "prior_from" in args:
            config = settings_from_study(config, args)
        if "slice_index" in args:
            raise InvalidInputError("--slice picks one slice, --slices several: give one of them")
        volume = read_volume(config.image, config.volume_index)
        slices = slice_range(args.slices, volume.slice_count)
        out = args.__dict__.get("out")
        if out is not None and (out / VOLUME_FILE).exists() and "overwrite" not in args:
            resume = out  # the same command again continues the volume
    resolve_device(config.device)
    fitted = volume_config(config, volume, slices)
    first = prepare_observation(fitted.replace(slice_index=slices.start))  # checks the settings
    batch = batch_size(fitted, first.image_shape, batch_option(args.__dict__.get("batch", "1")),
                       len(slices))
    if resume is None:
        out = prepare_output(out, config.method, "overwrite" in args)
        if "overwrite" in args:
            shutil.rmtree(out / "slices", ignore_errors=True)
            (out / VOLUME_FILE).unlink(missing_ok=True)
    save_volume_settings(out, config, slices)
    start = time.perf_counter()
    stop = threading.Event()
    try:
        with contextlib.ExitStack() as stack:
            executor = study_executor(stack, stop, None, args.__dict__.get("workers"),
                                      config.device)
            dataset = reconstruct_volume(
                config, slices, out, volume=volume, progress="quiet" not in args,
                executor=executor, batch=batch, stop=stop,
            )
    except (KeyboardInterrupt, Interrupted) as interrupted:
        print(f"pyrodip: {interrupted or 'interrupted'}: continue with pyrodip run --resume "
              f"{out}", file=sys.stderr)
        return 143 if stop.signal == signal.SIGTERM else 130
    line = write_result(dataset, out, fitted, volume, slices.start)
    print(volume_summary(dataset, out, time.perf_counter() - start))
    if line:
        print(line)
    return 0


def volume_summary(dataset, out: Path, seconds: float) -> str:
    """A few lines on a volume's reconstruction: what ran, the noise, the PSNRs per slice
    (when the truth is known), the uncertainty and the ``seconds`` the command took."""
    import numpy as np

    a = dataset.attrs
    config = json.loads(a["config"])
    count = dataset.sizes["slice"]
    height, width = dataset.sizes["y"], dataset.sizes["x"]
    lines = [
        f"pyrodip {a['task']}: {a['image']}, slices {a['slices']} ({count} x {height}x{width}), "
        f"{a['method']} ({a['guide']} guide, prior {a['prior']}), {a['steps']} steps per slice"
    ]
    if "noise_estimate" in dataset:
        estimates = dataset["noise_estimate"].values
        key, what = _level_words(a["noise"])
        how = (f"estimated over the {count} slices" if "volume_noise_estimate" in a else
               "as given")
        lines.append(
            f"  noise           {a['noise']}, {what} {config[key]:.3g} {how} (per slice "
            f"{np.nanmin(estimates):.3g}-{np.nanmax(estimates):.3g})"
        )
    if "mean_psnr" in dataset:
        psnr = dataset["mean_psnr"].values
        line = f"  reconstruction  PSNR {np.mean(psnr):6.2f} dB ({psnr.min():.2f}-{psnr.max():.2f})"
        if "psnr_input" in dataset:
            gain = psnr - dataset["psnr_input"].values
            line += f", {gain.min():+.2f} to {gain.max():+.2f} dB over the observation"
        lines.append(line)
    lines.append(f"  mean uncertainty (std) {float(dataset['std_total'].mean()):.4f}")
    lines.append(f"  time {seconds:.1f} s; wrote {out / 'result.nc'} and panel.png")
    return "\n".join(lines)


def settings_from_study(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """``config`` with the best settings of the study ``--prior-from`` names, but for the
    settings given as options."""
    from ..studies.bo import best_parameters

    best = best_parameters(args.prior_from)
    taken = {key: value for key, value in best.items() if key not in args}
    if taken:
        settings = ", ".join(f"{key}={value:.4g}" for key, value in taken.items())
        print(f"pyrodip: from {args.prior_from}: {settings}", file=sys.stderr)
    return config.replace(**taken)


def bo_command(args: argparse.Namespace) -> int:
    from ..studies import bo
    from ..studies.execution import dask_executor

    start = time.perf_counter()
    if "resume" in args:
        kept = ("command", "handler", "resume", "rounds", "scheduler", "workers", "quiet",
                "retry_failed")
        given = [key for key in vars(args) if key not in kept]
        if given:
            option = "--" + given[0].replace("_", "-").replace("params", "param")
            option = option.replace("plugins", "plugin")
            raise InvalidInputError(
                f"--resume takes the study's settings from its study.json: drop {option}"
            )
        folder = args.resume
        study = bo.load_study(folder)
    else:
        if "retry_failed" in args:
            raise InvalidInputError("--retry-failed reruns the failed trials of a study: add "
                                    "--resume DIR")
        config = config_from_args(args)
        for key in ("image", "mask"):  # workers may run elsewhere: name files absolutely
            if Path(getattr(config, key)).is_file():
                config = config.replace(**{key: str(Path(getattr(config, key)).resolve())})
        d = bo.Study()
        study = bo.Study(
            params=tuple(map(bo.Param.parse, args.params)) if "params" in args else None,
            objective=args.__dict__.get("objective", d.objective),
            config=config,
            init_points=args.__dict__.get("init_points", d.init_points),
            init=bo.parse_init(args.__dict__.get("init", ())),
            rounds=args.__dict__.get("rounds", d.rounds),
            batch=args.__dict__.get("batch", d.batch),
            seed=config.seed,
            batched="batched" in args,
        )
        bo.FitObjective(config, study.objective).check(study.fits_at_once)
        folder = prepare_output(args.__dict__.get("out"), "bo", overwrite=False)
        bo.create_study(study, folder)
    stop = threading.Event()
    try:
        with _interrupt_on_sigterm(stop), dask_executor(
            args.__dict__.get("scheduler"), args.__dict__.get("workers"), study.config.device,
            concurrency=1 if study.batched else study.batch,
        ) as executor:
            dataset = bo.resume(
                folder, rounds=args.__dict__.get("rounds"), executor=executor,
                progress="quiet" not in args, retry_failed="retry_failed" in args,
            )
    except KeyboardInterrupt:
        print(f"pyrodip: interrupted: continue with pyrodip bo --resume {folder}",
              file=sys.stderr)
        return 143 if stop.signal == signal.SIGTERM else 130
    print(bo.summary(dataset, folder, time.perf_counter() - start))
    return 0


def resumed_config(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    """The settings and folder of the interrupted run that ``--resume DIR`` names."""
    from ..infer.checkpoints import read_checkpoint

    allowed = ("command", "handler", "resume", "quiet", "checkpoint_every")
    given = [key for key in vars(args) if key not in allowed]
    if given:
        option = "--" + given[0].replace("_", "-").replace("plugins", "plugin")
        raise InvalidInputError(
            f"--resume takes every setting from the checkpoint: drop {option}"
        )
    out = args.resume
    state = read_checkpoint(out / CHECKPOINT)
    return RunConfig(**json.loads(state["config"])), out


def study_executor(stack: contextlib.ExitStack, stop: threading.Event, scheduler: str | None,
                   workers: int | None, device: str):
    """The Dask executor a study's options ask for, entered on ``stack`` (None: the fits run in
    this process), with the signal handling that goes with it: in this process SIGTERM and
    Ctrl-C stop the fit (``stop``), which saves its checkpoint; with workers they interrupt the
    study, which shuts its cluster down."""
    if scheduler is None and workers is None:
        stack.enter_context(_stop_on_signals(stop))
        return None
    from ..studies.execution import dask_executor

    stack.enter_context(_interrupt_on_sigterm(stop))
    return stack.enter_context(dask_executor(scheduler, workers, device))


@contextlib.contextmanager
def _interrupt_on_sigterm(stop: threading.Event):
    """While a study waits on its workers, SIGTERM (e.g. SLURM preemption) interrupts it as
    Ctrl-C does (recording which signal as ``stop.signal``), so that its cluster is shut
    down."""
    stop.signal = signal.SIGINT

    def handler(signum, frame) -> None:
        stop.signal = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def calibration_line(attrs: dict) -> str:
    """How the std was calibrated and the coverage it targets, in words.

    >>> calibration_line({"calibration": "scale", "calibration_scale": 2.0,
    ...                   "calibration_heldout": 1638})
    'std x 2.00 fitted on 1638 held-out values (scale): targets 68 % and 95 % coverage'
    """
    method = attrs.get("calibration", "none")
    if method == "none":
        return "none (the std as the posterior gives it)"
    scale = attrs["calibration_scale"]
    if scale != scale:  # NaN
        return f"{method}: no scale (the prediction has no uncertainty)"
    target = ("68 % and 95 % coverage" if method == "scale" else
              f"at least {attrs['calibration_coverage']:.0%} coverage of observed values")
    return (f"std x {scale:.2f} fitted on {attrs['calibration_heldout']} held-out values "
            f"({method}): targets {target}")


def _level_words(noise: str) -> tuple[str, str]:
    """The setting that gives noise model ``noise``'s level, and the level's name in words."""
    from ..physics.tasks import noise_level_setting

    key = noise_level_setting(noise)
    return key, "peak" if key == "photons" else "std"


def noise_line(attrs: dict) -> str:
    """The noise level of an observed image and where it came from, in words.

    >>> noise_line({"noise": "gaussian", "noise_level": 0.05, "noise_estimate": 0.0493,
    ...             "config": '{"noise_std": null, "photons": null, "noise": "gaussian"}'})
    'gaussian, std 0.0493 estimated from the image'
    """
    config = json.loads(attrs["config"])
    key, what = _level_words(attrs["noise"])
    estimate = f"{attrs['noise_estimate']:.3g}"
    if config[key] is None:
        return f"{attrs['noise']}, {what} {estimate} estimated from the image"
    return f"{attrs['noise']}, {what} {config[key]:g} as given (the image suggests {estimate})"


def summary(dataset, out: Path) -> str:
    """A few lines: what ran, the PSNRs, the uncertainty and the time."""
    a = dataset.attrs
    channels, height, width = (dataset.sizes[d] for d in ("channel", "y", "x"))
    lines = [
        f"pyrodip {a['task']}: {a['image']} ({channels}x{height}x{width}), {a['method']} "
        f"({a['guide']} guide, prior {a['prior']}), {a['steps']} steps",
    ]
    if "chosen_step" in a:
        ran = dataset.sizes["step"]
        how = f"stopped after {ran} steps" if a["status"] == "stopped" else f"ran all {ran} steps"
        lines.append(f"  stop rule       {a['stop_rule']}: {how}, kept step {a['chosen_step']}")
    if "noise_estimate" in a:
        lines.append(f"  noise           {noise_line(a)}")
    if "psnr_input" in a:
        psnr_in, ssim_in = a["psnr_input"], a["ssim_input"]
        lines.append(f"  observation     PSNR {psnr_in:6.2f} dB  SSIM {ssim_in:.3f}")
    if "psnr" in a:
        gain = f"  ({a['psnr'] - a['psnr_input']:+.2f} dB)" if "psnr_input" in a else ""
        lines.append(f"  reconstruction  PSNR {a['psnr']:6.2f} dB  SSIM {a['ssim']:.3f}{gain}")
    if "baseline_psnr" in a:
        others = ""
        if "classical_psnr" in dataset and dataset.sizes["classical"] > 1:
            scores = dataset["classical_psnr"].to_series().drop(a["baseline"])
            others = "; " + ", ".join(f"{name} {value:.2f}" for name, value in scores.items())
        lines.append(
            f"  best baseline   PSNR {a['baseline_psnr']:6.2f} dB  SSIM {a['baseline_ssim']:.3f}"
            f"  ({a['baseline']}{others})"
        )
    if "psnr_missing" in a:
        lines.append(
            f"  missing pixels  PSNR {a['psnr_missing']:6.2f} dB (baseline "
            f"{a['baseline_psnr_missing']:.2f} dB)"
        )
    lines.append(
        f"  mean uncertainty (std) {a['mean_std_total']:.4f} from {a['samples']} samples"
    )
    lines.append(f"  calibration     {calibration_line(a)}")
    if "coverage_68" in a and a.get("calibration", "none") != "none":
        lines.append(
            f"  coverage vs truth  68 %: {a['coverage_68_raw']:.2f} raw -> {a['coverage_68']:.2f}"
            f",  95 %: {a['coverage_95_raw']:.2f} raw -> {a['coverage_95']:.2f}"
        )
    lines.append(f"  time {a['wall_time_s']:.1f} s; wrote {out / 'result.nc'} and panel.png")
    return "\n".join(lines)
