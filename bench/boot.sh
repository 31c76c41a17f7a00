#!/usr/bin/env bash
# Time from exec to the "ready" log line of `roost run` on an empty registry, and the host's
# resident memory once ready. Usage: bench/boot.sh [path/to/roost] [runs]
set -euo pipefail
roost=${1:-.build/release/roost}
runs=${2:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/registry"
echo "machine: $(nproc) cores, $(uname -r); roost: $roost; $runs runs"
times=()
rss=()
for i in $(seq "$runs"); do
  fifo="$work/log"; rm -f "$fifo"; mkfifo "$fifo"
  start=$(date +%s%N)
  "$roost" run --registry "$work/registry" --state "$work/state" 2>"$fifo" &
  pid=$!
  exec 3<"$fifo"   # one reader for the whole run, so the host never writes to a closed FIFO
  while IFS= read -r line <&3; do
    case "$line" in *"roost ready in"*) break;; esac
  done
  ready=$(date +%s%N)
  times+=($(( (ready - start) / 1000 )))
  rss+=($(awk '/VmRSS/ {print $2}' /proc/$pid/status))
  kill -TERM "$pid"
  cat <&3 >/dev/null
  exec 3<&-
  wait "$pid"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p90() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.9+0.5)]}'; }
echo "time to ready: median $(( $(median "${times[@]}") / 1000 )).$(( $(median "${times[@]}") % 1000 / 100 )) ms, p90 $(( $(p90 "${times[@]}") / 1000 )) ms"
echo "resident memory when ready: median $(( $(median "${rss[@]}") / 1024 )) MiB ($(median "${rss[@]}") KiB)"
