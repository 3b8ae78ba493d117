#!/usr/bin/env bash
# Make sure a redis-server executable exists (the Redis tests start their own throwaway servers with it).
# Does nothing when one is found; otherwise installs the Debian package redis-server with apt-get and stops
# the system service the package may have started. Prints one line saying what it did.
set -euo pipefail

find_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        command -v redis-server
        return 0
    fi
    local candidate
    for candidate in /usr/sbin/redis-server /usr/bin/redis-server; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if found=$(find_redis); then
    echo "ensure-redis: redis-server already installed ($found), nothing to do"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: redis-server is missing and apt-get is not available; install Redis 7 by hand" >&2
    exit 1
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "ensure-redis: redis-server is missing; installing it needs root (or sudo)" >&2
        exit 1
    fi
fi

# apt-get's output is kept out of the way and shown only if it fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { ${as_root[@]+"${as_root[@]}"} apt-get update -q &&
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-redis: apt-get install redis-server failed" >&2
    exit 1
fi

# The package may have started its own service; our tests start their own servers, so stop it.
stopped=""
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if ${as_root[@]+"${as_root[@]}"} systemctl is-active --quiet redis-server 2>/dev/null; then
        ${as_root[@]+"${as_root[@]}"} systemctl stop redis-server >/dev/null 2>&1 || true
        stopped=" (stopped the redis-server service it started)"
    fi
elif command -v service >/dev/null 2>&1; then
    if ${as_root[@]+"${as_root[@]}"} service redis-server status >/dev/null 2>&1; then
        ${as_root[@]+"${as_root[@]}"} service redis-server stop >/dev/null 2>&1 || true
        stopped=" (stopped the redis-server service it started)"
    fi
fi

if ! found=$(find_redis); then
    echo "ensure-redis: apt-get installed redis-server but no redis-server executable was found" >&2
    exit 1
fi
echo "ensure-redis: installed redis-server with apt-get ($found, $("$found" --version | cut -d' ' -f3))$stopped"
