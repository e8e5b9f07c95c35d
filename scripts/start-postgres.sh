#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the tests, or stop one.
#
#   eval "$(scripts/start-postgres.sh)"      # start; exports the URL the tests read
#   scripts/start-postgres.sh start --durable  # same, with fsync and synchronous commit on
#   scripts/start-postgres.sh stop DIR       # stop it and delete DIR
#
# The cluster lives in a new temporary folder, listens on a free port of
# 127.0.0.1 only (password login) and on a unix socket inside that folder, and is
# run by an unprivileged user (`codemode-pg`, created when run as root; a normal
# user runs it as themselves). Needs Debian's `postgresql` package (initdb and
# pg_ctl). Only the `export` lines go to stdout; progress goes to stderr.
set -euo pipefail

SERVICE_USER=codemode-pg
DB_USER=codemode
DB_NAME=codemode

say() { printf '%s\n' "$*" >&2; }

find_bindir() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z "$found" ]] && command -v pg_config >/dev/null; then
        found=$(pg_config --bindir)
    fi
    if [[ -z "$found" || ! -x "$found/initdb" ]]; then
        say "start-postgres: initdb not found; install PostgreSQL first (apt-get install postgresql)"
        exit 1
    fi
    printf '%s\n' "$found"
}

# Run a command as the cluster's owner: the unprivileged user when we are root.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$SERVICE_USER" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

stop_cluster() {
    local dir=$1
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        say "start-postgres: $dir holds no cluster"
        exit 1
    fi
    local bindir
    bindir=$(find_bindir)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
    rm -rf -- "$dir"
}

start_cluster() {
    local durable=${1:-no} bindir dir password port attempt
    bindir=$(find_bindir)
    if [[ $(id -u) -eq 0 ]] && ! id "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    # Under /tmp, not $TMPDIR: the unprivileged owner must be able to reach it.
    dir=$(mktemp -d /tmp/codemode-pg.XXXXXXXX)
    if [[ $(id -u) -eq 0 ]]; then
        chown "$SERVICE_USER" "$dir"
    fi
    password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$password" >"$dir/password"
    if [[ $(id -u) -eq 0 ]]; then
        chown "$SERVICE_USER" "$dir/password"
    fi
    chmod 600 "$dir/password"
    # C collation: text sorts by code point, as it does on SQLite.
    as_owner "$bindir/initdb" -D "$dir/data" -U "$DB_USER" --pwfile="$dir/password" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        --no-instructions >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    cat >"$dir/data/pg_hba.conf" <<'EOF'
# Throwaway test cluster: the socket folder is private to its owner; TCP only on 127.0.0.1.
local all all trust
host  all all 127.0.0.1/32 scram-sha-256
EOF
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
EOF
    if [[ $durable == yes ]]; then
        # For the server-loss campaign: a commit the client saw must survive a
        # crash of the server, so every durability setting stays at its default.
        cat >>"$dir/data/postgresql.conf" <<EOF
fsync = on
full_page_writes = on
synchronous_commit = on
EOF
    else
        # A throwaway cluster for tests: skipping fsync makes CREATE DATABASE per
        # test cheap. Committed data still survives a kill of any client process.
        cat >>"$dir/data/postgresql.conf" <<EOF
fsync = off
full_page_writes = off
synchronous_commit = off
EOF
    fi
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port" start >&2; then
            break
        fi
        say "start-postgres: could not start on port $port (attempt $attempt)"
        port=""
    done
    if [[ -z "$port" ]]; then
        tail -n 20 "$dir/server.log" >&2 || true
        exit 1
    fi
    until as_owner "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; do sleep 0.2; done
    as_owner "$bindir/createdb" -h "$dir" -p "$port" -U "$DB_USER" "$DB_NAME"
    say "start-postgres: PostgreSQL on 127.0.0.1:$port, data in $dir"
    printf 'export CODEMODE_STORE_TEST_POSTGRES_URL=postgresql+psycopg://%s:%s@127.0.0.1:%s/%s\n' \
        "$DB_USER" "$password" "$port" "$DB_NAME"
    printf 'export CODEMODE_STORE_TEST_POSTGRES_DIR=%s\n' "$dir"
    printf '# stop it with: scripts/start-postgres.sh stop %s\n' "$dir"
}

case "${1:-start}" in
    start)
        case "${2:-}" in
            "") start_cluster no ;;
            --durable) start_cluster yes ;;
            *)
                say "usage: $0 start [--durable]"
                exit 2
                ;;
        esac
        ;;
    stop)
        if [[ -z "${2:-}" ]]; then
            say "usage: $0 stop DIR"
            exit 2
        fi
        stop_cluster "$2"
        ;;
    *)
        say "usage: $0 [start [--durable] | stop DIR]"
        exit 2
        ;;
esac
