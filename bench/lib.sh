# bench/lib.sh: what the bench scripts share: failing with the script's name, the tools and
# binaries a script needs, a temp dir cleaned up at exit with every process they started, free
# loopback ports, CPU pinning (servers on CPU 0, clients on CPU 1), the CPU time of a process
# and a one-worker nginx answering `return 200`. Sourced, never run.

# die MESSAGE: "bench/SCRIPT: MESSAGE" on stderr, exit 1
die() {
    echo "bench/$(basename "$0"): $*" >&2
    exit 1
}

# bench_need WHAT...: each WHAT with a / is a binary of the build (missing: make), each other a
# command on PATH (missing: make deps)
bench_need() {
    for w in "$@"; do
        case $w in
        */*) [ -x "$w" ] || die "$w is missing (make)" ;;
        *) command -v "$w" >/dev/null || die "$w is missing (make deps)" ;;
        esac
    done
}

tmp=$(mktemp -d)
pids=()
bench_cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap bench_cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pin_server=()
pin_client=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c 0)
    pin_client=(taskset -c 1)
fi

# start_nginx [WORKER_CONNECTIONS [CERT KEY]]: sets nginx_port and nginx_pid; with CERT and KEY
# it speaks TLS (with a session cache, so reconnecting clients can resume).
start_nginx() {
    local wc=${1:-4096}
    local tls="" ssl_conf=""
    if [ -n "${2:-}" ]; then
        tls=" ssl"
        ssl_conf="ssl_certificate $2; ssl_certificate_key $3; ssl_session_cache shared:S:10m;"
    fi
    nginx_port=$(free_port)
    mkdir -p "$tmp/nginx"
    cat > "$tmp/nginx/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile $((wc * 2 + 64));
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections $wc; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port$tls backlog=16384;
        $ssl_conf
        location / { return 200; }
    }
}
NGX
    "${pin_server[@]}" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2> "$tmp/nginx/stderr" &
    pids+=($!)
    nginx_pid=$!
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $nginx_port), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "bench: nginx did not start:" >&2
    cat "$tmp/nginx/stderr" "$tmp/nginx/error.log" >&2 || true
    exit 1
}

# proc_cpu PID: the user+system CPU seconds process PID (all its threads) used so far
proc_cpu() {
    python3 -c "import os; f = open('/proc/$1/stat').read().rsplit(')', 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"
}

# cpu_of OUT CMD...: runs CMD with its stdout to OUT and prints "CPU_SECONDS PEAK_RSS_KIB RC":
# the user+system CPU it and its children used, their peak resident set, its exit status.
cpu_of() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out:
    rc = subprocess.call(sys.argv[2:], stdout=out)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.4f %d %d" % (ru.ru_utime + ru.ru_stime, ru.ru_maxrss, rc))
PY
}

# make_pki DIR: a throw-away CA (DIR/ca.pem) and a server certificate for 127.0.0.1 and localhost
# (DIR/server.pem, DIR/server.key), EC P-256, valid two days.
make_pki() {
    local d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" \
        -out "$d/ca.pem" -days 2 -subj "/CN=hookring bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/server.key" \
        -out "$d/server.csr" -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > "$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -out "$d/server.pem" -days 2 -extfile "$d/server.ext" 2>/dev/null
}

# nginx_cpu: CPU seconds (user + system) the nginx worker has used so far; its growth over a
# run says whether the receiver was the bottleneck (a worker busy ~100 % of the run).
nginx_cpu() {
    local w
    w=$(pgrep -P "$nginx_pid" | head -n 1)
    python3 -c "import os; f = open('/proc/$w/stat').read().rsplit(')', 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"
}
