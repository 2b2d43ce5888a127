#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the Slurm tests (tests/slurm.rs) and for
# trying `fer-lab sweep --executor slurm` without a cluster. Debian/Ubuntu, as root, no systemd
# needed:
#
#   scripts/slurm-local.sh install   # apt: slurmctld slurmd slurm-client munge (about a minute)
#   scripts/slurm-local.sh start     # munged, slurmctld, slurmd; waits until the node is idle
#   scripts/slurm-local.sh stop
#
# The node has this machine's cores and memory and two fake GPUs (character devices, as Slurm
# refuses plain files), so `--gres=gpu:1` schedules as on a GPU cluster; one partition, `debug`;
# arrays of at most 3 tasks (`MaxArraySize=3`), so that the tests split arrays.
set -euo pipefail

conf=/etc/slurm/slurm.conf
state=/var/spool/slurmctld
spool=/var/spool/slurmd
logs=/var/log/slurm
runs=/run/slurm

install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

configure() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p /etc/slurm "$state" "$spool" "$logs" "$runs"
    cat > "$conf" <<EOF
ClusterName=fer-lab-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
MinJobAge=600
# Tiny on purpose: a 4-run test sweep is split into arrays of at most 3 tasks, as a large sweep
# is at a real cluster's limit (1001 by default).
MaxArraySize=3
StateSaveLocation=$state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$runs/slurmctld.pid
SlurmdPidFile=$runs/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    for i in 0 1; do
        [ -e /tmp/fakegpu$i ] || mknod /tmp/fakegpu$i c 1 3
    done
    printf 'Name=gpu File=/tmp/fakegpu[0-1]\n' > /etc/slurm/gres.conf
}

start() {
    configure
    mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            sinfo
            return 0
        fi
        sleep 0.5
    done
    echo "slurm-local: the node never became idle; sinfo says:" >&2
    sinfo >&2 || true
    tail -20 "$logs/slurmctld.log" "$logs/slurmd.log" >&2 || true
    return 1
}

stop() {
    for pid in "$runs/slurmd.pid" "$runs/slurmctld.pid"; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    pkill -x munged 2>/dev/null || true
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: scripts/slurm-local.sh install | start | stop" >&2; exit 2 ;;
esac
