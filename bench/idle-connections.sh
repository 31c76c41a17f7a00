#!/usr/bin/env bash
# Host memory under many idle keep-alive connections: Roost serves an http.service, a client
# (bench/idle_client.py) opens COUNT connections, sends one GET on each, reads the answer and keeps
# the connection open. Prints Roost's resident memory (VmRSS of /proc/PID/status) before, with the
# connections open, and after they close, and the cost per connection.
#
# - The request is for a path no endpoint serves: Roost answers 404 itself and keeps the
#   connection, so no CGI process is started and what is measured is the connections alone.
# - The service's idle_timeout is 10 minutes (default 60 s), so no connection is closed for
#   idleness while the client opens the rest.
# - Roost is started with a soft open-file limit of 1,024, as a login shell gives: it raises it to
#   the hard limit itself at start. The script raises the hard limit to COUNT + 1,024 when it is
#   lower (root only), and the client's soft limit with it.
#
# Usage: bench/idle-connections.sh [path/to/roost] [COUNT (10000)]
set -euo pipefail
roost=$(realpath "${1:-.build/release/roost}")
count=${2:-10000}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
[ -x "$roost" ] || { echo "no roost at $roost: make release builds it" >&2; exit 1; }

need=$((count + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  ulimit -Hn "$need" || { echo "cannot raise the open-file hard limit to $need (not root?)" >&2; exit 1; }
fi
ulimit -Sn "$(ulimit -Hn)"

work=$(mktemp -d /tmp/roost-bench-idle-XXXXXX)
roost_pid=""
cleanup() {
  [ -n "$roost_pid" ] && kill -TERM "$roost_pid" 2>/dev/null && wait "$roost_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(free_port)
mkdir -p "$work/registry"
cat > "$work/registry/idle.yaml" <<YAML
namespace: bench
entries:
  - {name: web, kind: http.service, listen: '127.0.0.1:$port', idle_timeout: 10m}
YAML
machine_line
(ulimit -Sn 1024; exec "$roost" run --registry "$work/registry" --state "$work/state" --log-level warning) \
  >"$work/roost.log" 2>&1 &
roost_pid=$!
wait_port "$port" || { cat "$work/roost.log"; exit 1; }
echo "roost: $roost (pid $roost_pid), open files $(awk '/^Max open files/ {print "soft " $4 ", hard " $5}' "/proc/$roost_pid/limits")"

status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/idle")
[ "$status" = 404 ] || { echo "expected 404 for /idle, got $status" >&2; exit 1; }
before=$(rss_kib "$roost_pid")
echo "roost resident memory before: $before KiB ($(ls "/proc/$roost_pid/fd" | wc -l) descriptors)"

started=$(date +%s%N)
coproc CLIENT { exec python3 "$here/idle_client.py" "$port" "$count" /idle; }
client_pid=$CLIENT_PID
opened=0
while IFS= read -r line <&"${CLIENT[0]}"; do
  echo "client: $line"
  case "$line" in ready*) opened=${line#ready }; break;; esac
done
elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
with=$(rss_kib "$roost_pid")
descriptors=$(ls "/proc/$roost_pid/fd" | wc -l)
# The host still answers a new client with every connection open.
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/idle")
echo "$opened connections open after $elapsed ms; a new request meanwhile: $status"
echo "roost resident memory with them: $with KiB ($descriptors descriptors)"
echo >&"${CLIENT[1]}"
IFS= read -r line <&"${CLIENT[0]}" && echo "client: $line"
wait "$client_pid" 2>/dev/null || true
# The server sees the closes on its loop; give it a moment to release them before reading again.
for _ in $(seq 50); do
  [ "$(ls "/proc/$roost_pid/fd" | wc -l)" -le $((descriptors - opened + 16)) ] && break
  sleep 0.1
done
# After a burst has mostly closed, the server gives free memory back a second later (its ticker).
sleep 2
after=$(rss_kib "$roost_pid")
echo "roost resident memory after they closed: $after KiB ($(ls "/proc/$roost_pid/fd" | wc -l) descriptors)"
if [ "$opened" -gt 0 ]; then
  awk -v b="$before" -v w="$with" -v n="$opened" 'BEGIN {
    printf "per idle connection: %.2f KiB (%.1f MiB for %d)\n", (w - b) / n, (w - b) / 1024, n }'
fi
[ "$opened" = "$count" ] || { echo "only $opened of $count connections stood" >&2; exit 1; }
