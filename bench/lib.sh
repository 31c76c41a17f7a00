# Helpers the HTTP benchmarks share (sourced, not run).

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS]: returns once something accepts on 127.0.0.1:PORT; fails after SECONDS (10).
wait_port() {
  local port=$1 limit=${2:-10} deadline
  deadline=$(( $(date +%s) + limit ))
  until (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "nothing listens on 127.0.0.1:$port after ${limit}s" >&2; return 1; fi
    sleep 0.05
  done
}

# check_answer NAME URL EXPECTED: the server answers 200 with EXPECTED (one line) as its whole body,
# or the run stops.
check_answer() {
  local name=$1 url=$2 expected=$3 status body
  status=$(curl -s -o "$work/answer" -w '%{http_code}' "$url") || { echo "$name: no answer from $url" >&2; return 1; }
  body=$(cat "$work/answer")
  if [ "$status" != 200 ] || [ "$body" != "$expected" ] || [ "$(wc -l < "$work/answer")" != 1 ]; then
    echo "$name: $url answered $status with '$(cat "$work/answer")', expected 200 with '$expected'" >&2
    return 1
  fi
  echo "$name: $url answers 200 '$body'"
}

# session_cpu_ticks SID...: CPU time (clock ticks: user + system, with that of reaped children)
# of every process now in the sessions SID... (each server runs in a session of its own). A
# server's CGI programs are its reaped children, so this is the server's cost per request and the
# programs' together.
session_cpu_ticks() {
  local total=0 pid
  for pid in $(ps -o pid= --sid "$(tr ' ' , <<<"$*")"); do
    # Fields after the ")" of the command: utime is the 12th, stime, cutime, cstime follow.
    total=$(( total + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}' || echo 0) ))
  done
  echo "$total"
}

# run_wrk NAME URL THREADS CONNECTIONS SECONDS WARMUP ["SID..."]: a warm-up run, then the measured
# one; prints one line (req/s, p50, p99, errors, and with sessions the CPU time per request of
# their processes) and appends "NAME REQS" to $work/rates.
run_wrk() {
  local name=$1 url=$2 threads=$3 connections=$4 seconds=$5 warmup=$6 group=${7:-} out rate p50 p99 errors cpu="" t0 t1 count
  wrk -t"$threads" -c"$connections" -d"${warmup}s" "$url" >/dev/null
  [ -n "$group" ] && t0=$(session_cpu_ticks $group)
  out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$url")
  if [ -n "$group" ]; then
    t1=$(session_cpu_ticks $group)
    count=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$count" 'BEGIN { printf "cpu %.3f ms/req", t * 1000 / hz / n }')
  fi
  rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  # Non-2xx answers and socket errors make a figure worthless: say so next to it.
  errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ';' || true)
  printf '%-22s %10.0f req/s   p50 %9s   p99 %9s   %s   %s\n' "$name" "$rate" "$p50" "$p99" "$cpu" "${errors:-no errors}"
  echo "$name $rate" >> "$work/rates"
}

# print_ratios BASE: each server's rate divided by BASE's.
print_ratios() {
  local base=$1
  awk -v base="$base" '{ rate[$1] = $2; order[NR] = $1 } END {
    if (!(base in rate) || rate[base] == 0) { print "no rate for " base; exit }
    for (i = 1; i <= NR; i++) printf "%-22s %5.2fx %s\n", order[i], rate[order[i]] / rate[base], base
  }' "$work/rates"
}

# round_ratios BASE: each other server's rate in $work/rates as a multiple of BASE's, on one line.
round_ratios() {
  awk -v base="$1" '{ rate[$1] = $2; order[NR] = $1 } END {
    for (i = 1; i <= NR; i++) if (order[i] != base && rate[base] > 0) printf "%s %.2fx  ", order[i], rate[order[i]] / rate[base]
    print ""
  }' "$work/rates"
}

# median_ratios BASE FILE...: each server's median, over the FILEs (one round's rates each), of its
# rate divided by BASE's rate in the same round.
median_ratios() {
  local base=$1; shift
  awk -v base="$base" '
    FNR == 1 { round++ }
    { rate[round, $1] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++count] = $1 } }
    END {
      for (i = 1; i <= count; i++) {
        name = order[i]; n = 0
        for (r = 1; r <= round; r++) if (rate[r, base] > 0) ratio[++n] = rate[r, name] / rate[r, base]
        for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (ratio[b] < ratio[a]) { t = ratio[a]; ratio[a] = ratio[b]; ratio[b] = t }
        median = n % 2 ? ratio[(n + 1) / 2] : (ratio[n / 2] + ratio[n / 2 + 1]) / 2
        printf "%-22s %5.2fx %s (rounds:", name, median, base
        for (a = 1; a <= n; a++) printf " %.2f", ratio[a]
        print ")"
      }
    }' "$@"
}

# start_nginx PORT HTTP_LINES: nginx in $work/nginx, in a session of its own, with no access log and
# its temporary files in $work, serving `server { listen 127.0.0.1:PORT; ... }` where HTTP_LINES
# (directives of the http block, the server block included) say the rest; returns once it accepts.
start_nginx() {
  local port=$1 http=$2
  mkdir -p "$work/nginx/logs"
  cat > "$work/nginx.conf" <<CONF
daemon off;
user root;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  fastcgi_temp_path $work/nginx/fastcgi;
  proxy_temp_path $work/nginx/proxy;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
$http
}
CONF
  start "$work/nginx.log" nginx -p "$work/nginx" -c "$work/nginx.conf" -e "$work/nginx/error.log"
  wait_port "$port" || { cat "$work/nginx.log" "$work/nginx/error.log"; exit 1; }
}

# rss_kib PID: the resident memory of PID in KiB (VmRSS of /proc/PID/status).
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# mib KIB: KIB in MiB, one decimal.
mib() {
  awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

machine_line() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# make_workspace NAME: a fresh folder $work (removed at exit), and `start LOG COMMAND...`, which
# runs a server in a session of its own; every session started is stopped at exit (TERM, then KILL).
make_workspace() {
  work=$(mktemp -d "/tmp/roost-bench-$1-XXXXXX")
  chmod 755 "$work"
  groups=()
  trap 'for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done; sleep 0.5;
        for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}

start() {
  local log=$1; shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  groups+=($!)
}

# wrk_settings: seconds, warmup, connections, threads from SECONDS_RUN (10), WARMUP (3),
# CONNECTIONS (32), THREADS (2).
wrk_settings() {
  seconds=${SECONDS_RUN:-10}
  warmup=${WARMUP:-3}
  connections=${CONNECTIONS:-32}
  threads=${THREADS:-2}
}

# require_tools TOOL...: exits with a line naming the first one missing.
require_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: make bench-deps installs it" >&2; exit 1; }
  done
}
