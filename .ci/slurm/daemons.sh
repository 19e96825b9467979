# Sourced by start.sh and stop.sh: daemons known by their pid files.

running() {  # running PIDFILE NAME: the pid file names a live process called NAME
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$2" ]]
}

stop_daemon() {  # stop_daemon PIDFILE NAME: SIGTERM, then SIGKILL after 15 s
    running "$1" "$2" || return 0
    local pid
    pid=$(<"$1")
    echo "slurm: stopping $2 (pid $pid)"
    kill "$pid"
    for _ in $(seq 150); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.1
    done
    echo "slurm: $2 (pid $pid) still running after 15 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}
