#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (Debian's slurm packages and munge), for the
# tests that submit Dask workers through dask-jobqueue's SLURMCluster. Runs as root; needs no
# systemd (the daemons are started by hand) and no cgroups (proctrack/linuxproc, task/none).
# Idempotent: packages, the munge key and running daemons are kept; a changed slurm.conf restarts
# the slurm daemons. Stop everything with .ci/slurm/stop.sh.
#
# One node, named after `hostname -s`, at 127.0.0.1, with `nproc` CPUs, in one partition `debug`
# (the default, no time limit, requeue allowed). Cores and memory are consumable
# (select/cons_tres, CR_Core_Memory); a job that asks for no memory gets DefMemPerCPU per CPU,
# so as many 1-core jobs run at once as there are CPUs.
set -euo pipefail
source "$(dirname "$0")/daemons.sh"

started=$(date +%s%3N)
say() { echo "slurm/start.sh: $*"; }
since() { local ms=$(( $(date +%s%3N) - $1 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }  # seconds since $1 (ms)
die() { echo "slurm/start.sh: error: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts system daemons)"

node=$(hostname -s)
conf=/etc/slurm/slurm.conf
logdir=/var/log/slurm
ctld_pidfile=/run/slurmctld.pid
slurmd_pidfile=/run/slurmd.pid
munge_pidfile=/run/munge/munged.pid
timeout=${SLURM_START_TIMEOUT:-60}

# ---- packages ---------------------------------------------------------------------------------
missing=()
for pkg in munge slurmctld slurmd slurm-client; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    t0=$(date +%s%3N)
    apt-get update -qq
    # policy-rc.d (where there is one) keeps the packages' own service starts from running.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client >/dev/null
    say "packages installed in $(since "$t0") s"
fi

# ---- munge ------------------------------------------------------------------------------------
# The package's postinst creates the key; make one if it is missing. munged must run as the key's
# owner (user munge) and refuses a key or directories that others can write.
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating the munge key"
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0600 /etc/munge/munge.key


if running "$munge_pidfile" munged && munge -n </dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n </dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# ---- slurm.conf -------------------------------------------------------------------------------
cpus=$(nproc)
mem_total_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
# A bit below the machine's memory: 5% (at least 256 MB) is left to the system, else slurmd
# finds less than configured and the node is drained ("Low RealMemory").
reserve=$(( mem_total_mb / 20 > 256 ? mem_total_mb / 20 : 256 ))
real_mem=$(( mem_total_mb - reserve ))
def_mem_per_cpu=$(( real_mem / cpus ))

install -d -m 0755 /etc/slurm "$logdir" /var/spool/slurmctld /var/spool/slurmd
new_conf=$(cat <<EOF
# Written by .ci/slurm/start.sh: a single-node cluster for tests (no cgroups, no accounting).
ClusterName=ci
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${def_mem_per_cpu}
ReturnToService=2
JobRequeue=1
KillWait=5
InactiveLimit=0
MinJobAge=300
SlurmctldTimeout=120
SlurmdTimeout=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${ctld_pidfile}
SlurmdPidFile=${slurmd_pidfile}
SlurmctldLogFile=${logdir}/slurmctld.log
SlurmdLogFile=${logdir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=${node} NodeAddr=127.0.0.1 NodeHostname=${node} CPUs=${cpus} RealMemory=${real_mem} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
)

restart=0
if [[ ! -f $conf ]] || [[ "$(cat "$conf")" != "$new_conf" ]]; then
    say "writing $conf (node $node, $cpus CPUs, RealMemory=$real_mem MB)"
    printf '%s\n' "$new_conf" >"$conf"
    chmod 0644 "$conf"
    restart=1
fi

# ---- slurm daemons ----------------------------------------------------------------------------

if ((restart)); then
    stop_daemon "$slurmd_pidfile" slurmd
    stop_daemon "$ctld_pidfile" slurmctld
fi

if running "$ctld_pidfile" slurmctld; then
    say "slurmctld already running"
else
    say "starting slurmctld"
    /usr/sbin/slurmctld
fi
slurmd_started=0  # when this run started slurmd: the node is ready once that slurmd registered
if running "$slurmd_pidfile" slurmd; then
    say "slurmd already running"
else
    say "starting slurmd"
    slurmd_started=$(date +%s)
    /usr/sbin/slurmd -N "$node"
fi

# ---- wait for the node ------------------------------------------------------------------------
deadline=$(( $(date +%s) + timeout ))
state=
while :; do
    state=$(sinfo -h -n "$node" -o '%t' 2>/dev/null | head -n1 || true)
    registered=$(scontrol show node "$node" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2 || true)
    registered=$(date -d "$registered" +%s 2>/dev/null || echo 0)
    case $state in
        idle | mix | alloc | comp)  # mix/alloc/comp: jobs from an earlier start
            if ((registered >= slurmd_started)); then break; fi ;;
        drain* | drng | down* | fail*)
            # e.g. left down by an earlier stop; ReturnToService=2 only revives unresponsive nodes.
            scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
    esac
    if (( $(date +%s) >= deadline )); then
        echo "--- sinfo ---" >&2; sinfo -N -l >&2 || true
        echo "--- scontrol show node ---" >&2; scontrol show node "$node" >&2 || true
        echo "--- $logdir/slurmctld.log ---" >&2; tail -n 20 "$logdir/slurmctld.log" >&2 || true
        echo "--- $logdir/slurmd.log ---" >&2; tail -n 20 "$logdir/slurmd.log" >&2 || true
        die "node $node is not idle after ${timeout} s (state: '${state:-no answer}')"
    fi
    sleep 0.5
done

say "node $node is $state; ready in $(since "$started") s"
