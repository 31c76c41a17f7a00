#!/usr/bin/env bash
# 1,000 services with auto_start: the time from starting the supervisor until all 1,000 service
# processes exist, the supervisor's resident memory then, and its CPU time over 10 idle seconds;
# for roost, supervisord and s6 (s6-svscan and its s6-supervise processes, summed). Every service
# is `sleep 100077` (the argument marks it). Usage: bench/many.sh [path/to/roost] [count]
set -euo pipefail
roost=${1:-.build/release/roost}
count=${2:-1000}
work=$(mktemp -d)
here=$(cd "$(dirname "$0")" && pwd)
cleanup() { pkill -TERM -f "$work" 2>/dev/null || true; sleep 1; pkill -9 -f "$work" 2>/dev/null || true; pkill -9 -f 'sleep 100077$' 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
hz=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, $(uname -r); $count services"

running() { pgrep -c -f 'sleep 100077$' || true; }
# cpu_ticks PID...: utime + stime of the processes.
cpu_ticks() { local t=0 p; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
rss_kib() { local t=0 p; for p in "$@"; do [ -r /proc/$p/status ] && t=$((t + $(awk '/VmRSS/ {print $2}' /proc/$p/status))); done; echo $t; }

start_ticks() { awk '{sub(/.*\) /, ""); print $20}' "/proc/$1/stat"; }

# report NAME SUPERVISOR_PID PIDS_COMMAND [PER_SERVICE]: waits for all services, then measures.
# The start time is the span between the supervisor's process start and the last service
# process's, both from /proc (clock ticks: 1/$hz s).
report() {
  local name=$1 supervisor=$2 pids_cmd=$3 per_service=${4:-1} last
  if ! last=$("$here/wait-services.py" "$count" 100077 120 "$baseline" "$per_service"); then echo "$name: not all services started"; return; fi
  local span=$(( (last - $(start_ticks "$supervisor")) * 1000 / hz ))
  local pids; pids=$($pids_cmd)
  local rss; rss=$(rss_kib $pids)
  local c0; c0=$(cpu_ticks $pids); sleep 10; local c1; c1=$(cpu_ticks $($pids_cmd))
  printf '%-12s all %d running after %5d ms   resident %6d KiB   idle CPU %5.2f%% (10 s)\n' \
    "$name" "$count" "$span" "$rss" "$(echo "($c1 - $c0) * 100 / $hz / 10" | bc -l)"
}

# roost
mkdir -p "$work/registry"
{
  echo "namespace: many"
  echo "entries:"
  for i in $(seq "$count"); do
    echo "  - {name: s$i, kind: swiftlet.service, exec: [/bin/sleep, '100077'], lifecycle: {auto_start: true}}"
  done
} > "$work/registry/many.yaml"
baseline=$(ls /proc | grep -c '^[0-9]')
"$roost" run --registry "$work/registry" --state "$work/state" --log-level error 2>/dev/null &
host=$!
report roost "$host" "echo $host"
kill -TERM "$host"; wait "$host" 2>/dev/null || true
while [ "$(running)" -gt 0 ]; do sleep 0.05; done

if command -v supervisord >/dev/null; then
  cat > "$work/supervisord.conf" <<CONF
[supervisord]
nodaemon=true
logfile=$work/supervisord.log
pidfile=$work/supervisord.pid
minfds=4096
[program:svc]
command=/bin/sleep 100077
process_name=%(program_name)s_%(process_num)04d
numprocs=$count
autorestart=true
startsecs=0
CONF
  baseline=$(ls /proc | grep -c '^[0-9]')
  supervisord -c "$work/supervisord.conf" >/dev/null 2>&1 &
  sup=$!
  report supervisord "$sup" "echo $sup"
  kill -TERM "$sup"; wait "$sup" 2>/dev/null || true
  pkill -9 -f 'sleep 100077$' 2>/dev/null || true
  while [ "$(running)" -gt 0 ]; do sleep 0.05; done
fi

if command -v s6-svscan >/dev/null; then
  mkdir -p "$work/s6"
  for i in $(seq "$count"); do
    mkdir -p "$work/s6/s$i"
    printf '#!/bin/sh\nexec /bin/sleep 100077\n' > "$work/s6/s$i/run"
    chmod +x "$work/s6/s$i/run"
  done
  baseline=$(ls /proc | grep -c '^[0-9]')
  s6-svscan -c $((count + 10)) "$work/s6" >/dev/null 2>&1 &
  scan=$!
  report s6 "$scan" "eval echo $scan \$(pgrep -f 's6-supervise')" 2
  s6-svscanctl -t "$work/s6" 2>/dev/null || kill -TERM "$scan"
  wait "$scan" 2>/dev/null || true
fi
