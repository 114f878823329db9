#!/usr/bin/env bash
# Turns this Debian 12 machine into a one-node Slurm cluster: installs slurm-wlm, munge and the
# PMIx library, writes /etc/slurm/slurm.conf for this host, starts munged, slurmctld and slurmd
# directly (no systemd needed) and waits until the node accepts jobs. Safe to run again: it only
# changes what is missing or out of date. Run as root (or it re-runs itself with sudo).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"

say() { echo "setup-slurm: $*"; }
die() { echo "setup-slurm: ERROR: $*" >&2; exit 1; }
# Slurm client commands get a timeout: when a name does not resolve, each call can hang for 10 s.
q() { timeout 10 "$@" 2>/dev/null; }

CONF=/etc/slurm/slurm.conf
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
LOG_DIR=/var/log/slurm
MUNGE_KEY=/etc/munge/munge.key
PARTITION=main
WAIT_SECONDS=${SLURM_SETUP_WAIT:-60}
MARK="# Written by mq-dist scripts/setup-slurm.sh"

# --- packages -------------------------------------------------------------------------------
# slurm-wlm-basic-plugins (pulled in by slurm-wlm) holds mpi_pmix.so, but that plugin dlopens the
# unversioned libpmix.so, which only libpmix-dev ships: without it `srun --mpi=pmix` fails.
PACKAGES=(slurm-wlm munge libpmix-dev)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
    say "packages present: ${PACKAGES[*]}"
fi

# --- slurm.conf -----------------------------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
mem_mib=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MEM=$((mem_mib * 95 / 100))   # a bit under: slurmd drains a node that has less than this
# Use slurmd's view of sockets/cores/threads when it agrees with nproc (so that CR_Core counts
# real cores); otherwise (e.g. a CPU-limited container) only state the usable CPU count.
HW="CPUs=$CPUS"
if probe=$(slurmd -C 2>/dev/null | head -n 1) && [[ $probe =~ CPUs=([0-9]+)\ (Boards=.*ThreadsPerCore=[0-9]+) ]] \
    && [ "${BASH_REMATCH[1]}" = "$CPUS" ]; then
    HW="CPUs=$CPUS ${BASH_REMATCH[2]}"
fi

new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
$MARK for this host only.
# Re-running the script rewrites it; edit the script, not this file.
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire+1 s (default 120) before it may start again, and then for the
# next scheduler pass (sched_interval, default 60 s): keep both short on a one-node test cluster.
AuthInfo=cred_expire=10
SchedulerParameters=sched_interval=5
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 $HW RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

conf_changed=0
if [ -f "$CONF" ] && cmp -s "$new_conf" "$CONF"; then
    say "$CONF unchanged ($NODE: $HW RealMemory=$REAL_MEM)"
else
    mkdir -p /etc/slurm
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        backup="$CONF.orig.$(date +%Y%m%d%H%M%S)"
        cp -p "$CONF" "$backup"
        say "kept the previous $CONF as $backup"
    fi
    install -m 0644 "$new_conf" "$CONF"
    conf_changed=1
    say "wrote $CONF ($NODE: $HW RealMemory=$REAL_MEM, partition $PARTITION)"
fi
mkdir -p "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"

# --- munge ----------------------------------------------------------------------------------
if [ ! -s "$MUNGE_KEY" ]; then
    mungekey --create --keyfile="$MUNGE_KEY"
    say "created $MUNGE_KEY"
fi
chown munge:munge "$MUNGE_KEY"
chmod 0400 "$MUNGE_KEY"
install -d -o munge -g munge -m 0755 /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    runuser -u munge -- munged </dev/null
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 \
        || die "munged does not answer; see /var/log/munge/munged.log"
    say "started munged"
fi

# --- slurmctld and slurmd -------------------------------------------------------------------
alive() { # is process $1 alive? A zombie is not (in a container, pid 1 may never reap it)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ] && [ "${stat:0:1}" != X ]
}
running_pid() { # prints the pid of daemon $1 if it runs (from its pid file)
    local pid
    pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}
stop_daemon() {
    local pid
    pid=$(running_pid "$1") || return 0
    kill "$pid"
    for _ in $(seq 40); do
        alive "$pid" || return 0
        sleep 0.5
    done
    die "$1 (pid $pid) did not stop"
}
start_daemon() {
    if [ $conf_changed -eq 1 ] && running_pid "$1" >/dev/null; then
        stop_daemon "$1"
        say "stopped $1 to load the new configuration"
    fi
    if pid=$(running_pid "$1"); then
        say "$1 already running (pid $pid)"
    else
        "$1" </dev/null || die "$1 failed to start; see $LOG_DIR/$1.log"
        say "started $1"
    fi
}
start_daemon slurmctld
start_daemon slurmd

# --- wait for the node ----------------------------------------------------------------------
resumed=0
state=""
deadline=$((SECONDS + WAIT_SECONDS))
while [ $SECONDS -lt $deadline ]; do
    state=$(q sinfo -h -N -n "$NODE" -o %T | head -n 1) || state=""
    case "$state" in
    idle | mixed | allocated | completing) break ;;
    down | drained | draining | fail | failing)
        # Left over from an earlier run (e.g. slurmd was killed): the node answers, so resume it.
        if [ $resumed -eq 0 ]; then
            reason=$(q sinfo -h -N -n "$NODE" -o %E | head -n 1) || reason=""
            q scontrol update nodename="$NODE" state=resume || true
            say "resumed $NODE (was $state: ${reason:-no reason})"
            resumed=1
        fi
        ;;
    esac
    sleep 0.5
done
case "$state" in
idle) say "node $NODE is idle: ready (sbatch, srun --mpi=pmix)" ;;
mixed | allocated | completing) say "node $NODE is up and running jobs ($state)" ;;
*)
    echo "setup-slurm: ERROR: node $NODE is not idle after ${WAIT_SECONDS}s (state: ${state:-no answer from slurmctld})" >&2
    q scontrol show node "$NODE" | grep -E 'State=|Reason=' >&2 || true
    for f in slurmctld slurmd; do
        echo "--- last lines of $LOG_DIR/$f.log" >&2
        tail -n 5 "$LOG_DIR/$f.log" >&2 2>/dev/null || true
    done
    exit 1
    ;;
esac
compgen -G "/usr/lib/*/pmix2/lib/libpmix.so" >/dev/null \
    || die "libpmix.so (package libpmix-dev) is missing: srun --mpi=pmix would fail"
