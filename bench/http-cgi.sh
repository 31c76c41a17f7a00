#!/usr/bin/env bash
# Requests per second through a CGI program: the same small static C program (bench/cgi/hello.c,
# gcc -static -O2) behind Roost (http.service + swiftlet.function + http.endpoint), lighttpd's
# mod_cgi, and nginx + fcgiwrap (4 workers), each on its own 127.0.0.1 port, measured by wrk one
# after the other in the same run. Every server is checked to answer 200 with the program's output
# before it is measured. Prints req/s, latency p50/p99 and each rate as a multiple of lighttpd's
# (the target for Roost: 1.3x).
#
# Settings that keep the comparison fair:
# - No access log anywhere (Roost runs with --log-level warning, which drops its per-request info
#   line; lighttpd logs no access by default; nginx has access_log off).
# - The function's concurrency and queue are raised to 256 and 4096: with Roost's defaults (8 and
#   64) the function gate, not the server, would set the rate, and wrk's connections beyond 72
#   would get 503s. lighttpd and nginx put no such limit on CGI processes (fcgiwrap: 4 at once).
#
# - One file: every server runs the very same hello.cgi (in lighttpd's document root). Two copies of
#   one binary are not equal here: a freshly written file's page cache can cost its every exec more
#   page-table work than another copy's, enough to move a ratio by several percent.
# - Rounds: the three servers are measured one after the other, ROUNDS times over, and the ratio is
#   the median of the rounds' ratios; this machine's speed drifts by more than 10% within a minute.
#
# Usage: bench/http-cgi.sh [path/to/roost] ; environment: SECONDS_RUN (10), WARMUP (3),
# CONNECTIONS (32), THREADS (2), ROUNDS (3). Needs gcc, wrk, lighttpd, nginx, fcgiwrap, curl
# (make bench-deps).
set -euo pipefail
roost=$(realpath "${1:-.build/release/roost}")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
wrk_settings
require_tools gcc wrk lighttpd nginx fcgiwrap curl
[ -x "$roost" ] || { echo "no roost at $roost: make release builds it" >&2; exit 1; }

make_workspace cgi

mkdir -p "$work/lighttpd"
program="$work/lighttpd/hello.cgi"
gcc -static -O2 -o "$program" "$here/cgi/hello.c"
expected="hello from cgi: GET ?"
machine_line
echo "roost: $roost; wrk -t$threads -c$connections -d${seconds}s after a ${warmup}s warm-up, one server at a time"

# Roost
roost_port=$(free_port)
mkdir -p "$work/registry"
cat > "$work/registry/bench.yaml" <<YAML
namespace: bench
entries:
  - {name: web, kind: http.service, listen: '127.0.0.1:$roost_port'}
  - name: hello
    kind: swiftlet.function
    exec: [$program]
    concurrency: 256
    queue: 4096
  - {name: hello-route, kind: http.endpoint, method: GET, path: /cgi/hello, func: hello}
YAML
start "$work/roost.log" "$roost" run --registry "$work/registry" --state "$work/state" --log-level warning
wait_port "$roost_port" || { cat "$work/roost.log"; exit 1; }

# lighttpd, mod_cgi
lighttpd_port=$(free_port)
cat > "$work/lighttpd.conf" <<CONF
server.document-root = "$work/lighttpd"
server.bind = "127.0.0.1"
server.port = $lighttpd_port
server.modules = ("mod_cgi")
server.errorlog = "$work/lighttpd.err"
cgi.assign = (".cgi" => "")
CONF
start "$work/lighttpd.log" lighttpd -D -f "$work/lighttpd.conf"
wait_port "$lighttpd_port" || { cat "$work/lighttpd.log" "$work/lighttpd.err"; exit 1; }

# nginx + fcgiwrap (4 workers)
nginx_port=$(free_port)
start "$work/fcgiwrap.log" fcgiwrap -c 4 -s "unix:$work/fcgiwrap.sock"
start_nginx "$nginx_port" "  server {
    listen 127.0.0.1:$nginx_port;
    location = /cgi/hello {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $program;
      fastcgi_pass unix:$work/fcgiwrap.sock;
    }
  }"

check_answer roost "http://127.0.0.1:$roost_port/cgi/hello" "$expected"
check_answer lighttpd-mod_cgi "http://127.0.0.1:$lighttpd_port/hello.cgi" "$expected"
check_answer nginx+fcgiwrap "http://127.0.0.1:$nginx_port/cgi/hello" "$expected"

: > "$work/rates"
rounds=${ROUNDS:-3}
# The cpu column: CPU time per request of the server's processes and the CGI programs they reaped.
for round in $(seq "$rounds"); do
  echo "round $round of $rounds:"
  run_wrk roost "http://127.0.0.1:$roost_port/cgi/hello" "$threads" "$connections" "$seconds" "$warmup" "${groups[0]}"
  run_wrk lighttpd-mod_cgi "http://127.0.0.1:$lighttpd_port/hello.cgi" "$threads" "$connections" "$seconds" "$warmup" "${groups[1]}"
  run_wrk nginx+fcgiwrap "http://127.0.0.1:$nginx_port/cgi/hello" "$threads" "$connections" "$seconds" "$warmup" "${groups[2]} ${groups[3]}"
  echo "round $round: $(round_ratios lighttpd-mod_cgi)"
  # lighttpd 1.4.69's heap grows with every CGI request it serves, and each fork copies more of it:
  # the reason its rate falls from round to round (docs/BENCHMARKS.md). Roost's stays flat.
  echo "round $round: resident memory roost $(mib "$(rss_kib "${groups[0]}")") MiB, lighttpd $(mib "$(rss_kib "${groups[1]}")") MiB"
  mv "$work/rates" "$work/rates.$round"
done
echo "(nginx+fcgiwrap's cpu leaves its CGI programs out: fcgiwrap's workers ignore SIGCHLD, so the kernel"
echo " reaps the programs and their time is added to no process; roost's and lighttpd's include them)"
echo "median ratio to lighttpd over $rounds rounds (target for roost: 1.30x):"
median_ratios lighttpd-mod_cgi "$work"/rates.*
echo "roost resident memory after the run: $(mib "$(rss_kib "${groups[0]}")") MiB"
