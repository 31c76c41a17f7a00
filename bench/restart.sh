#!/usr/bin/env bash
# Restart latency: SIGKILL of a running service until its replacement process exists, measured
# from outside the supervisor, for roost and for runit, s6 and supervisord running the same
# service. The service writes its pid into a FIFO the benchmark holds open, then execs sleep; the
# time is from the kill to reading the new pid (so it includes starting /bin/sh, for every tool).
# Roost's service is configured with no restart delay (initial_delay 0, no jitter).
# Usage: bench/restart.sh [path/to/roost] [kills] [kills for the others, which wait ~1 s by design
# or need a service that ran for a second]
set -euo pipefail
roost=${1:-.build/release/roost}
kills=${2:-200}
slow_kills=${3:-10}
work=$(mktemp -d)
pids=()
services=()  # the last service pid of each tool: runit, s6 and supervisord leave it running
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${services[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkfifo "$work/fifo"
exec 3<>"$work/fifo"
cat > "$work/svc.sh" <<SCRIPT
#!/bin/sh
echo \$\$ > $work/fifo
exec sleep 100000
SCRIPT
chmod +x "$work/svc.sh"
echo "machine: $(nproc) cores, $(uname -r)"

# measure NAME KILLS [SETTLE]: kills the current pid KILLS times, each after the service has run
# SETTLE seconds (runsv waits a second before restarting a service that ran less than a second,
# so runit is measured on services that ran longer); prints p50 and p99 in ms.
measure() {
  local name=$1 n=$2 settle=${3:-0} pid t0 t1 samples=()
  read -t 10 pid <&3 || { echo "$name: the service did not start"; return; }
  for _ in $(seq "$n"); do
    [ "$settle" != 0 ] && sleep "$settle"
    t0=${EPOCHREALTIME/./}
    kill -9 "$pid"
    read -t 10 pid <&3 || { echo "$name: no restart within 10 s"; return; }
    t1=${EPOCHREALTIME/./}
    samples+=($((t1 - t0)))
  done
  services+=("$pid")
  local sorted
  sorted=$(printf '%s\n' "${samples[@]}" | sort -n)
  local p50 p99
  p50=$(echo "$sorted" | awk -v n="$n" 'NR==int((n+1)/2)')
  p99=$(echo "$sorted" | awk -v n="$n" 'NR==int(n*0.99+0.999)')
  printf '%-12s %4d kills  p50 %8.2f ms  p99 %8.2f ms\n' "$name" "$n" "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)"
  echo "$name $p50" >> "$work/p50"
}

# roost
mkdir -p "$work/registry"
cat > "$work/registry/svc.yaml" <<YAML
namespace: bench
entries:
  - name: svc
    kind: swiftlet.service
    exec: [$work/svc.sh]
    lifecycle:
      auto_start: true
      restart: {initial_delay: 0, jitter: 0, max_restarts: 100000, window: 1s}
YAML
"$roost" run --registry "$work/registry" --state "$work/state" --log-level error 2>/dev/null &
pids+=($!)
measure roost "$kills"
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

if command -v runsv >/dev/null; then
  mkdir -p "$work/runit/svc"
  printf '#!/bin/sh\nexec %s\n' "$work/svc.sh" > "$work/runit/svc/run"; chmod +x "$work/runit/svc/run"
  runsv "$work/runit/svc" &
  pids+=($!)
  measure runit "$slow_kills" 1.1
  kill -TERM "${pids[-1]}" 2>/dev/null || true
else
  echo "runit: not installed (apt-get install runit)"
fi

if command -v s6-supervise >/dev/null; then
  mkdir -p "$work/s6/svc"
  printf '#!/bin/sh\nexec %s\n' "$work/svc.sh" > "$work/s6/svc/run"; chmod +x "$work/s6/svc/run"
  s6-supervise "$work/s6/svc" &
  pids+=($!)
  measure s6 "$slow_kills"
  s6-svc -dx "$work/s6/svc" 2>/dev/null || kill -TERM "${pids[-1]}" 2>/dev/null || true
else
  echo "s6: not installed (apt-get install s6)"
fi

if command -v supervisord >/dev/null; then
  cat > "$work/supervisord.conf" <<CONF
[supervisord]
nodaemon=true
logfile=$work/supervisord.log
pidfile=$work/supervisord.pid
[program:svc]
command=$work/svc.sh
autorestart=true
startsecs=0
startretries=100000
CONF
  supervisord -c "$work/supervisord.conf" &
  pids+=($!)
  measure supervisord "$slow_kills"
  kill -TERM "${pids[-1]}" 2>/dev/null || true
else
  echo "supervisord: not installed (apt-get install supervisor)"
fi

base=$(awk '$1 == "roost" {print $2}' "$work/p50" 2>/dev/null || true)
if [ -n "$base" ]; then
  awk -v base="$base" '$1 != "roost" {printf "p50 ratio %s / roost: %.1fx\n", $1, $2 / base}' "$work/p50"
fi
