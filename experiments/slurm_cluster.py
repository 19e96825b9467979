"""A Dask cluster whose workers are SLURM jobs (``dask-jobqueue``), for ``pyrodip compare`` and
``pyrodip bo --scheduler``: it prints the scheduler's address, then keeps ``--jobs`` worker jobs
running (a job that SLURM preempts or that dies is replaced) until it gets SIGTERM or Ctrl-C.

Each job is one worker process running one fit at a time with ``--cores`` torch threads,
started by this Python (so the workers import the same pyrodip). A preempted job's fit runs
again on a replacement job; a study fit resumes from the checkpoint it keeps beside its run.
``tests/studies/test_slurm.py`` runs exactly this on a single-node SLURM
(``.ci/slurm/start.sh``)::

    python experiments/slurm_cluster.py --jobs 4 --queue gpu --memory 16GB \\
        --job-extra=--gres=gpu:1 > scheduler.txt &
    pyrodip compare experiments/oct_compare.toml --out runs/oct --set device=cuda \\
        --scheduler "$(head -1 scheduler.txt)"
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker jobs kept running [2]")
    parser.add_argument("--queue", default=None, help="SLURM partition [the default one]")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores per job [1]")
    parser.add_argument("--memory", default="4GB", help="memory per job [4GB]")
    parser.add_argument("--walltime", default="04:00:00", help="time limit per job [04:00:00]")
    parser.add_argument("--job-name", default="pyrodip-worker", help="SLURM job name")
    parser.add_argument("--job-extra", action="append", default=[], metavar="DIRECTIVE",
                        help="an extra #SBATCH directive, e.g. --job-extra=--gres=gpu:1")
    parser.add_argument("--log-directory", default=None, help="where the jobs' logs go")
    args = parser.parse_args(argv)

    import dask
    from dask_jobqueue import SLURMCluster

    # A lost job is noticed (and replaced) after this long; Dask's default is 15 s.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"}):
        cluster = SLURMCluster(
            queue=args.queue, cores=args.cores, processes=1, memory=args.memory,
            walltime=args.walltime, job_name=args.job_name, python=sys.executable,
            job_extra_directives=args.job_extra, log_directory=args.log_directory,
            # The job is the worker process itself (no nanny): a nanny would set glibc's
            # MALLOC_TRIM_THRESHOLD_, which makes CPU fits 1.8 times slower.
            nanny=False,
            job_script_prologue=[f"export OMP_NUM_THREADS={args.cores}",
                                 f"export MKL_NUM_THREADS={args.cores}"],
        )
        cluster.adapt(minimum_jobs=args.jobs, maximum_jobs=args.jobs)
        print(cluster.scheduler_address, flush=True)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
