#!/usr/bin/env bash
# A small file (1 KiB) served by Roost's http.static and by nginx, measured by wrk one after the
# other in the same run, with Roost's rate as a multiple of nginx's (target: 0.7x). Both are checked
# to answer 200 with the file's exact bytes before they are measured. For scale it also measures
# nginx's fixed `return 200` (no file at all).
#
# Fair settings: no access log on either (Roost runs with --log-level warning); nginx with its
# Debian defaults for files (sendfile on, one worker per core) and keep-alive, as wrk uses it.
#
# Usage: bench/http-static.sh [path/to/roost] ; environment: SECONDS_RUN (10), WARMUP (3),
# CONNECTIONS (32), THREADS (2), NGINX_ONLY=1 (measure nginx's half alone, e.g. with a roost that
# has no http.static yet; then there is no ratio).
set -euo pipefail
roost=$(realpath "${1:-.build/release/roost}")
nginx_only=${NGINX_ONLY:-0}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
wrk_settings
require_tools wrk nginx curl

make_workspace static

# 1 KiB of text: 16 lines of 63 characters and a newline.
mkdir -p "$work/www"
for i in $(seq -w 1 16); do printf '%-63s\n' "line $i of the small file that the static benchmark serves"; done > "$work/www/small.txt"
size=$(stat -c %s "$work/www/small.txt")
[ "$size" = 1024 ] || { echo "the test file is $size bytes, not 1024" >&2; exit 1; }

# check_file NAME URL: 200 and the file's exact bytes.
check_file() {
  local name=$1 url=$2 status
  status=$(curl -s -o "$work/answer" -w '%{http_code}' "$url") || { echo "$name: no answer from $url" >&2; return 1; }
  if [ "$status" != 200 ] || ! cmp -s "$work/answer" "$work/www/small.txt"; then
    echo "$name: $url answered $status with $(stat -c %s "$work/answer") bytes, not the file" >&2
    return 1
  fi
  echo "$name: $url answers 200 with the file ($size bytes)"
}

machine_line
echo "wrk -t$threads -c$connections -d${seconds}s after a ${warmup}s warm-up, one server at a time"

if [ "$nginx_only" != 1 ]; then
  [ -x "$roost" ] || { echo "no roost at $roost: make release builds it" >&2; exit 1; }
  roost_port=$(free_port)
  mkdir -p "$work/registry"
  cat > "$work/registry/static.yaml" <<YAML
namespace: bench
entries:
  - {name: web, kind: http.service, listen: '127.0.0.1:$roost_port'}
  - {name: files, kind: http.static, prefix: /static, root: $work/www, index: index.html}
YAML
  start "$work/roost.log" "$roost" run --registry "$work/registry" --state "$work/state" --log-level warning
  roost_session=${groups[-1]}
  wait_port "$roost_port" || { cat "$work/roost.log"; exit 1; }
  echo "roost: $roost"
fi

nginx_port=$(free_port)
start_nginx "$nginx_port" "  include /etc/nginx/mime.types;
  sendfile on;
  server {
    listen 127.0.0.1:$nginx_port;
    location /static/ { alias $work/www/; }
    location = /fixed { return 200 \"fixed\\n\"; }
  }"
nginx_session=${groups[-1]}
echo "nginx: $(nginx -v 2>&1)"

[ "$nginx_only" != 1 ] && check_file roost "http://127.0.0.1:$roost_port/static/small.txt"
check_file nginx "http://127.0.0.1:$nginx_port/static/small.txt"

: > "$work/rates"
# The cpu column: CPU time per request of the server's processes.
[ "$nginx_only" != 1 ] && run_wrk roost-http.static "http://127.0.0.1:$roost_port/static/small.txt" "$threads" "$connections" "$seconds" "$warmup" "$roost_session"
run_wrk nginx-file "http://127.0.0.1:$nginx_port/static/small.txt" "$threads" "$connections" "$seconds" "$warmup" "$nginx_session"
run_wrk nginx-return-200 "http://127.0.0.1:$nginx_port/fixed" "$threads" "$connections" "$seconds" "$warmup" "$nginx_session"
echo "ratio to nginx serving the file (target for roost: 0.70x):"
print_ratios nginx-file
if [ "$nginx_only" = 1 ]; then echo "(NGINX_ONLY=1: roost was not measured)"; fi
