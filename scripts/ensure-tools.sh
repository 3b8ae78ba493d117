#!/usr/bin/env bash
# Make sure the programs the tests start or call exist, installing the Debian packages that are
# missing in one apt-get call:
#   redis-server  (package redis-server)  the Redis tests start their own throwaway servers
#   promtool      (package prometheus)    the metrics tests check /metrics and the alert rules
#   rabbitmq-server (package rabbitmq-server) the RabbitMQ tests start their own throwaway nodes
# Does nothing for a program already found. A package that starts its own system service has
# that service stopped: the tests start what they need on loopback. That includes the `epmd`
# daemon the rabbitmq-server service starts and leaves behind when stopped (when no epmd ran
# before the install). Prints one line per program.
set -euo pipefail

# program  package  service the package may start
TOOLS=(
    "redis-server redis-server redis-server"
    "promtool prometheus prometheus"
    "rabbitmq-server rabbitmq-server rabbitmq-server"
)

find_program() {
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
        return 0
    fi
    local candidate
    for candidate in "/usr/sbin/$1" "/usr/bin/$1"; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

missing_packages=()
missing_services=()
for entry in "${TOOLS[@]}"; do
    read -r program package service <<<"$entry"
    if found=$(find_program "$program"); then
        echo "ensure-tools: $program already installed ($found)"
    else
        missing_packages+=("$package")
        missing_services+=("$service")
    fi
done
[ ${#missing_packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: missing packages ${missing_packages[*]} and apt-get is not available; install them by hand" >&2
    exit 1
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "ensure-tools: installing ${missing_packages[*]} needs root (or sudo)" >&2
        exit 1
    fi
fi

epmd_was_running=$(pgrep -x epmd >/dev/null 2>&1 && echo yes || echo no)

# apt-get's output is kept out of the way and shown only if it fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { ${as_root[@]+"${as_root[@]}"} apt-get update -q &&
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing_packages[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-tools: apt-get install ${missing_packages[*]} failed" >&2
    exit 1
fi

for service in "${missing_services[@]}"; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        if ${as_root[@]+"${as_root[@]}"} systemctl is-active --quiet "$service" 2>/dev/null; then
            ${as_root[@]+"${as_root[@]}"} systemctl stop "$service" >/dev/null 2>&1 || true
            echo "ensure-tools: stopped the $service service the package started"
        fi
    elif command -v service >/dev/null 2>&1; then
        if ${as_root[@]+"${as_root[@]}"} service "$service" status >/dev/null 2>&1; then
            ${as_root[@]+"${as_root[@]}"} service "$service" stop >/dev/null 2>&1 || true
            echo "ensure-tools: stopped the $service service the package started"
        fi
    fi
done

# Stopping rabbitmq-server leaves the epmd it started running (and systemd's epmd socket would
# start it again): stop it too, unless an epmd ran before the install.
if [[ " ${missing_packages[*]} " == *" rabbitmq-server "* ]] && [ "$epmd_was_running" = no ] &&
    pgrep -x epmd >/dev/null 2>&1; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        ${as_root[@]+"${as_root[@]}"} systemctl stop epmd.socket epmd.service >/dev/null 2>&1 || true
    fi
    epmd=$(find_program epmd || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -n 1 || true)
    if [ -n "$epmd" ]; then
        "$epmd" -kill >/dev/null 2>&1 || true
    fi
    if pgrep -x epmd >/dev/null 2>&1; then
        echo "ensure-tools: the epmd daemon the rabbitmq-server service started is still running" >&2
    else
        echo "ensure-tools: stopped the epmd daemon the rabbitmq-server service started"
    fi
fi

for entry in "${TOOLS[@]}"; do
    read -r program package _ <<<"$entry"
    if ! found=$(find_program "$program"); then
        echo "ensure-tools: apt-get installed $package but no $program executable was found" >&2
        exit 1
    fi
done
echo "ensure-tools: installed ${missing_packages[*]} with apt-get"
