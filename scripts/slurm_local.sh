#!/usr/bin/env bash
# A single-node Slurm on this machine, without systemd, for tests and demos.
#
#   bash scripts/slurm_local.sh start [DIR]   # munged + slurmctld + slurmd; prints SLURM_CONF=...
#   bash scripts/slurm_local.sh stop  [DIR]
#
# Needs Debian's slurmctld, slurmd, slurm-client and munge (.ci/run installs
# them) and root. Spool and state folders live in DIR (default
# /tmp/tts-bench-slurm); SlurmUser=root, proctrack/linuxproc, select/cons_tres
# with CR_CPU, no accounting (so no sacct). Idempotent: start on a running
# cluster only prints its SLURM_CONF.
set -euo pipefail
cmd="${1:-start}"
DIR="${2:-/tmp/tts-bench-slurm}"
CONF="$DIR/slurm.conf"
HOST="$(hostname -s)"

stop() {
  for f in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 1
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

if [ -f "$CONF" ] && SLURM_CONF="$CONF" sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then
  echo "SLURM_CONF=$CONF"; exit 0
fi
stop
mkdir -p "$DIR/state" "$DIR/spool" /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
[ -f /etc/munge/munge.key ] || mungekey --create
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
pgrep -x munged >/dev/null || runuser -u munge -- munged
CPUS="$(nproc)"
MEM_MB="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
cat > "$CONF" <<CONF
ClusterName=ttsbench
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF="$CONF"
slurmctld -D -i -f "$CONF" > /dev/null 2>&1 &
echo $! > "$DIR/slurmctld.pid"
sleep 1
slurmd -D -f "$CONF" > /dev/null 2>&1 &
echo $! > "$DIR/slurmd.pid"
for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then echo "SLURM_CONF=$CONF"; exit 0; fi
  sleep 0.5
done
echo "slurm did not reach idle; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
exit 1
