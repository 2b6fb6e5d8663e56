#!/usr/bin/env bash
# A real one-node SLURM cluster on this Debian machine (root needed), for testing the slurm profile.
#   scripts/slurm_cluster.sh start   # install slurm-wlm + munge if missing, write slurm.conf, start daemons
#   scripts/slurm_cluster.sh stop    # stop the daemons by their pid files
# No accounting daemon: the executor plugin is told to check status with squeue (see profiles/slurm),
# and finished jobs are logged by jobcomp/filetxt to $STATE/jobcomp.log as proof that they ran.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/tttnn-slurm}
CONF=/etc/slurm/slurm.conf
cmd=${1:-start}

stop() {
  for d in slurmd slurmctld; do
    if [[ -f $STATE/$d.pid ]]; then kill "$(cat "$STATE/$d.pid")" 2>/dev/null || true; rm -f "$STATE/$d.pid"; fi
  done
  if [[ -f $STATE/munged.pid ]]; then kill "$(cat "$STATE/munged.pid")" 2>/dev/null || true; rm -f "$STATE/munged.pid"; fi
}

if [[ $cmd == stop ]]; then stop; echo "slurm stopped"; exit 0; fi
[[ $cmd == start ]] || { echo "usage: $0 start|stop" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0: needs root (installs packages, starts daemons)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

stop
mkdir -p "$STATE"/{spool,ctld} /etc/slurm /etc/munge /run/munge /var/log/munge /var/lib/munge
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(free -m | awk '/^Mem:/{print $2}') - 1024 ))

if [[ ! -s /etc/munge/munge.key ]]; then
  if command -v mungekey >/dev/null; then mungekey -c -f -k /etc/munge/munge.key; else
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
su -s /bin/sh munge -c "munged --pid-file=/run/munge/munged.pid" 2>/dev/null || munged -f
cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || true
for _ in $(seq 20); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.5; done

cat > $CONF <<CONF
ClusterName=tttnn
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ReturnToService=2
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld
slurmd
for _ in $(seq 60); do
  if sinfo -h -o "%t" 2>/dev/null | grep -qx "idle"; then
    echo "slurm up: node $host, $cpus CPUs, ${mem} MB, partition main; job log $STATE/jobcomp.log"
    exit 0
  fi
  sleep 1
done
echo "$0: node did not become idle; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
sinfo >&2 || true
exit 1
