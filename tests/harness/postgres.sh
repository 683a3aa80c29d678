#!/usr/bin/env bash
# A private PostgreSQL cluster for tests and benchmarks: its own data
# directory under DIR, listening on 127.0.0.1:PORT only (no Unix socket
# outside DIR), trust authentication for the role `leadmail`, database
# `leadmail`. Nothing global is touched; `stop` leaves nothing running.
#
# Usage: postgres.sh start DIR PORT   (creates the cluster and starts it)
#        postgres.sh stop DIR         (immediate shutdown)
#        postgres.sh resume DIR       (starts a stopped cluster again)
#
# initdb refuses to run as root, so as root the cluster runs as the
# `postgres` system user that Debian's package creates.
set -euo pipefail

verb=${1:?usage: postgres.sh start|stop DIR [PORT]}
dir=${2:?usage: postgres.sh start|stop DIR [PORT]}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [[ -z $bindir || ! -x $bindir/initdb ]]; then
    echo "postgres.sh: PostgreSQL server not found (apt-get install postgresql)" >&2
    exit 2
fi

as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

server_start() {
    # The tests stop the server (immediate shutdown, a crash to PostgreSQL)
    # but never the machine: a commit must have been written to the WAL
    # (synchronous_commit stays on), while fsync only costs time here.
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir/sock \
            -c fsync=off -c full_page_writes=off \
            -c max_connections=200" \
        start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
}

case $verb in
start)
    port=${3:?usage: postgres.sh start DIR PORT}
    mkdir -p "$dir/sock"
    [[ $(id -u) == 0 ]] && chown -R postgres: "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U leadmail --auth=trust -N -E UTF8 \
        --locale=C >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    server_start
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U leadmail leadmail
    ;;
resume)
    port=$(cat "$dir/port")
    server_start
    ;;
stop)
    if [[ -f $dir/data/postmaster.pid ]]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    ;;
*)
    echo "postgres.sh: unknown verb $verb" >&2
    exit 2
    ;;
esac
