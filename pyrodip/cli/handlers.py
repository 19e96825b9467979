"""What the ``pyrodip`` commands (run, compare, report, bo) do, once :mod:`pyrodip.cli` has
read their options."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from ..errors import InvalidInputError
from .arguments import (
    batch_option,
    config_from_args,
    parse_settings,
    resumed_config,
    settings_from_study,
)
from .output import CHECKPOINT, prepare_output
from .signals import interrupt_on_sigterm, stop_on_signals, study_executor
from .summaries import summary, volume_summary


def run_command(args: argparse.Namespace) -> int:
    """``pyrodip run``: fit one image and write its result (a volume's slices with
    ``--slices``: :func:`volume_command`); the exit status."""
    # Heavy imports here, so that --help and input errors answer at once.
    from ..infer.checkpoints import Checkpointing, Interrupted
    from ..run.fit import fit, resolve_device
    from ..run.observe import prepare_observation
    from ..run.results import to_dataset, worse_than_input, write_result
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
        with stop_on_signals(stop):
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
    worse = worse_than_input(dataset)  # once the result is written: a failed write says only that
    if worse is not None:
        warnings.warn(worse, stacklevel=1)
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
    from ..studies.grid import batch_size
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


def compare_command(args: argparse.Namespace) -> int:
    """``pyrodip compare``: run a study file's comparison and write its table and figures;
    the exit status."""
    from ..infer.checkpoints import Interrupted
    from ..io.files import check_result_set
    from ..studies.compare import Comparison, run_comparison
    from ..studies.grid import check_batch
    from ..studies.table import summary_table

    comparison = Comparison.from_toml(args.study)
    settings = parse_settings(args.overrides)
    if args.plugins:  # every run names them, so that workers import them too
        given = settings.get("plugins", comparison.settings.get("plugins", []))
        settings["plugins"] = list(dict.fromkeys([*given, *args.plugins]))
    comparison = comparison.with_settings(**settings)
    batch = check_batch(comparison.grid_runs(), batch_option(args.batch))
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
    figures = [name for name in check_result_set(out) if name.endswith(".png")]
    print(summary_table(dataset))
    print(f"wrote {out / 'comparison.nc'}, table.md and {len(figures)} figures")
    failed = int((dataset["status"] == "failed").sum())
    if failed:
        print(f"pyrodip: error: {failed} of {dataset['status'].size} runs failed (listed under "
              "the table); run them again with --retry-failed", file=sys.stderr)
        return 1
    return 0


def report_command(args: argparse.Namespace) -> int:
    """``pyrodip report``: print the comparison table of saved results."""
    from ..studies.compare import load_results
    from ..studies.table import summary_table

    print(summary_table(load_results(args.paths)))
    return 0


def bo_command(args: argparse.Namespace) -> int:
    """``pyrodip bo``: tune run settings by Bayesian optimisation (or continue a study with
    ``--resume``); the exit status."""
    from ..studies import bo
    from ..studies.execution import dask_executor

    start = time.perf_counter()
    every = args.__dict__.get("checkpoint_every")
    if every is not None and every < 1:
        raise InvalidInputError(f"--checkpoint-every must be a positive integer, got {every}")
    if "resume" in args:
        kept = ("command", "handler", "resume", "rounds", "scheduler", "workers", "quiet",
                "retry_failed", "checkpoint_every")
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
        with interrupt_on_sigterm(stop), dask_executor(
            args.__dict__.get("scheduler"), args.__dict__.get("workers"), study.config.device,
            concurrency=1 if study.batched else study.batch,
        ) as executor:
            dataset = bo.resume(
                folder, rounds=args.__dict__.get("rounds"), executor=executor,
                progress="quiet" not in args, retry_failed="retry_failed" in args,
                checkpoint_every=every,
            )
    except KeyboardInterrupt:
        print(f"pyrodip: interrupted: continue with pyrodip bo --resume {folder}",
              file=sys.stderr)
        return 143 if stop.signal == signal.SIGTERM else 130
    print(bo.summary(dataset, folder, time.perf_counter() - start))
    return 0
