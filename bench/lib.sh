# bench/lib.sh: what the bench scripts share: a temp dir cleaned up at exit with every process
# they started, free loopback ports, CPU pinning (servers on CPU 0, clients on CPU 1) and a
# one-worker nginx answering `return 200`. Sourced, never run.

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

# start_nginx [WORKER_CONNECTIONS]: sets nginx_port and nginx_pid.
start_nginx() {
    local wc=${1:-4096}
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
        listen 127.0.0.1:$nginx_port backlog=16384;
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
