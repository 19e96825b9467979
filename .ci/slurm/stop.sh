#!/usr/bin/env bash
# Stop the single-node SLURM cluster that .ci/slurm/start.sh started: cancel all jobs, then stop
# slurmd, slurmctld and munged (by their pid files). Idempotent: what is not running is skipped.
# KEEP_MUNGE=1 leaves munged running.
set -euo pipefail
source "$(dirname "$0")/daemons.sh"

say() { echo "slurm/stop.sh: $*"; }



if running /run/slurmctld.pid slurmctld; then
    # Cancel the jobs first, so that their processes (e.g. Dask workers) do not outlive slurmd.
    if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
        say "cancelling all jobs"
        scancel --full $(squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z $(squeue -h -t R,CG -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

stop_daemon /run/slurmd.pid slurmd
stop_daemon /run/slurmctld.pid slurmctld
if [[ ${KEEP_MUNGE:-0} != 1 ]]; then
    stop_daemon /run/munge/munged.pid munged
fi
