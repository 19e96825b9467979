"""What the resumable studies in ``experiments/`` share: records of finished fits, a pool of
one-thread worker processes, and intervals over seeds.

Each fit writes ``OUT/jobs/NAME.json`` when it ends; a stage run again runs only the fits it
lacks, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: The shared test images (see their README), beside the checkout.
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The seeds of every study: a claim needs at least three.
SEEDS = (0, 1, 2)


def write_record(out: Path, name: str, record: dict) -> None:
    """Write one finished fit's record, atomically."""
    from pyrodip.io.files import atomic_path

    with atomic_path(out / "jobs" / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(record))


def load_records(out: Path) -> list[dict]:
    """Every finished fit's record in ``out``, by name."""
    return [json.loads(path.read_text()) for path in sorted((out / "jobs").glob("*.json"))]


def pending(jobs: list, out: Path, match: list[str] | None = None) -> list:
    """The ``jobs`` (each with a ``name``) that ``out`` has no record of, only those whose name
    contains one of ``match`` when given."""
    return [job for job in jobs if not (out / "jobs" / f"{job.name}.json").exists()
            and (not match or any(text in job.name for text in match))]


def run_jobs(stage: str, todo: list, run_job: Callable, out: Path, workers: int) -> None:
    """Run ``run_job(job, out)`` (returning the job's name) for every job of ``todo``, in
    ``workers`` processes of one thread each (in this process for ``workers`` <= 1)."""
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    print(f"{stage}: {len(todo)} fits to run", flush=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    if workers <= 1:
        for index, job in enumerate(todo, 1):
            print(f"[{index}/{len(todo)}] {run_job(job, out)}", flush=True)
        return
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(run_job, job, out) for job in todo]
        for index, future in enumerate(concurrent.futures.as_completed(futures), 1):
            minutes = (time.perf_counter() - start) / 60
            print(f"[{index}/{len(todo)}, {minutes:.1f} min] {future.result()}", flush=True)


def clipped_observation(config):
    """The observation of a run config, Gaussian noise clipped to [0, 1] as the paper did
    (not a CT sinogram, which is no image)."""
    import dataclasses

    from pyrodip.run.observe import prepare_observation

    obs = prepare_observation(config)
    if config.noise == "gaussian" and config.task != "ct":
        obs = dataclasses.replace(obs, observation=obs.observation.clamp(0, 1))
    return obs


def interval(values, digits: int = 2) -> str:
    """Mean +- half-width of the 95 % t-interval (``n`` < 2: the value alone).

    >>> interval([1.0, 2.0, 3.0])
    '2.00 ± 2.48'
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.{digits}f}"
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(len(values), 2.0)
    half = t * values.std(ddof=1) / math.sqrt(len(values))
    return f"{values.mean():.{digits}f} ± {half:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines (and an empty line after it)."""
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def study_main(argv: list[str] | None, module: str, doc: str, stages: tuple[str, ...],
               smoke: str, data: Path, run_stage: Callable, report: Callable) -> int:
    """The command line of a study: ``run --stage STAGE`` (then the report) or ``report``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--stage", choices=stages)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help=smoke)
    parser.add_argument("--match", action="append", metavar="TEXT",
                        help="run only the fits whose name contains TEXT (repeatable)")
    args = parser.parse_args(argv)
    if args.action == "run":
        if args.stage is None:
            parser.error(f"run needs --stage {', '.join(stages)}")
        if not data.is_dir():
            print(f"error: the shared images are not at {data}", file=sys.stderr)
            return 2
        run_stage(args.stage, args.out, args.workers, args.smoke, args.match)
    print(report(args.out))
    return 0
