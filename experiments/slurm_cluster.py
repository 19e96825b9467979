"""A Dask cluster whose workers are SLURM jobs (``dask-jobqueue``), for ``pyrodip compare`` and
``pyrodip bo --scheduler``: it prints the scheduler's address, then keeps ``--jobs`` worker jobs
running (a job that SLURM preempts or that dies is replaced) until it gets SIGTERM or Ctrl-C.

Each job is one worker process running one fit at a time with ``--cores`` torch threads,
started by this Python (so the workers import the same pyrodip). A preempted job's fit runs
again on a replacement job; a study fit resumes from the checkpoint it keeps beside its run.
``tests/experiments/test_slurm_cluster.py`` runs exactly this on a single-node SLURM
(``.ci/slurm/start.sh``)::

    python experiments/slurm_cluster.py --jobs 4 --queue gpu --memory 16GB \\
        --job-extra=--gres=gpu:1 > scheduler.txt &
    pyrodip compare experiments/oct_compare.toml --out runs/oct --set device=cuda \\
        --scheduler "$(head -1 scheduler.txt)"

A Dask scheduler runs whatever code a client submits, so the cluster is closed to everyone
but its own workers. On one node (the default: the jobs run on the machine that runs this
script, as in the test and CI) the scheduler, its dashboard and the workers listen on
127.0.0.1 only. With ``--multi-node`` the jobs run on other nodes: the scheduler and workers
then listen on the network (``--interface``) but speak TLS only, with a certificate made for
this cluster alone (``distributed.security.Security.temporary``, ``require_encryption``),
which the jobs read from files in ``--shared-directory`` that only the user can read (0600).
A client needs the same certificate: the script writes it to a folder of its own there
(0700) and prints, after the address, the Dask settings that give it to ``pyrodip compare
--scheduler`` (``export DASK_DISTRIBUTED__COMM__TLS__...``); a client without it is refused.
The dashboard stays on 127.0.0.1 (reach it through ``ssh -L``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The script's options."""
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
    parser.add_argument("--multi-node", action="store_true",
                        help="jobs on other nodes: listen on the network, TLS only [one node: "
                        "127.0.0.1 only]")
    parser.add_argument("--interface", default=None,
                        help="--multi-node: the network interface to listen on, e.g. ib0 "
                        "[the host's address]")
    parser.add_argument("--shared-directory", default=".",
                        help="--multi-node: a folder every node reads, for the jobs' "
                        "certificate files (readable by the user only) [.]")
    return parser.parse_args(argv)


def make_cluster(args: argparse.Namespace):
    """The ``SLURMCluster`` of ``args``, no job submitted yet, reachable by its own workers
    only (see the module docstring)."""
    from dask_jobqueue import SLURMCluster

    loopback = {"dashboard_address": "127.0.0.1:8787"}
    if args.multi_node:
        from distributed.security import Security

        network = {
            "protocol": "tls://", "interface": args.interface,
            "security": Security.temporary(),  # its own certificate; require_encryption
            "shared_temp_directory": os.path.abspath(args.shared_directory),
            "scheduler_options": loopback,
        }
    else:
        network = {"scheduler_options": {**loopback, "host": "127.0.0.1"},
                   "worker_extra_args": ["--host", "127.0.0.1"]}
    return SLURMCluster(
        queue=args.queue, cores=args.cores, processes=1, memory=args.memory,
        walltime=args.walltime, job_name=args.job_name, python=sys.executable,
        job_extra_directives=args.job_extra, log_directory=args.log_directory,
        # The job is the worker process itself (no nanny): a nanny would set glibc's
        # MALLOC_TRIM_THRESHOLD_, which makes CPU fits 1.8 times slower.
        nanny=False,
        job_script_prologue=[f"export OMP_NUM_THREADS={args.cores}",
                             f"export MKL_NUM_THREADS={args.cores}"],
        **network,
    )


def client_settings(security, folder: str) -> dict[str, str]:
    """Write the client's credentials of ``security`` (a cluster's temporary certificate) into
    a new folder in ``folder`` that only the user can read; the environment variables that
    make a Dask client use them."""
    private = tempfile.mkdtemp(prefix=".pyrodip-client-", dir=folder)  # mode 0700
    settings = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    for name, pem in (("CA_FILE", security.tls_ca_file), ("CLIENT__CERT", security.tls_client_cert),
                      ("CLIENT__KEY", security.tls_client_key)):
        path = os.path.join(private, name.lower().replace("__", "_") + ".pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(pem)
        settings[f"DASK_DISTRIBUTED__COMM__TLS__{name}"] = path
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    import dask

    # A lost job is noticed (and replaced) after this long; Dask's default is 15 s.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"}):
        cluster = make_cluster(args)
        cluster.adapt(minimum_jobs=args.jobs, maximum_jobs=args.jobs)
        print(cluster.scheduler_address, flush=True)
        if args.multi_node:
            settings = client_settings(cluster.security, os.path.abspath(args.shared_directory))
            print("for a client: export " + " ".join(f"{k}={v}" for k, v in settings.items()),
                  flush=True)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
        cluster.close()
        if args.multi_node:  # the certificate is this cluster's alone: it goes with it
            shutil.rmtree(os.path.dirname(settings["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
