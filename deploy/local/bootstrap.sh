#!/usr/bin/env bash
# Installs what ticketloop needs on a fresh Debian machine, idempotently; called by `make demo` and `make test`.
#   bash deploy/local/bootstrap.sh        # Java + Maven, uv, the Python env (locked), the Kafka broker jars
#   bash deploy/local/bootstrap.sh test   # ... and PostgreSQL, Prometheus, Alertmanager and Chromium (Debian's) for the tests
set -euo pipefail
cd "$(dirname "$0")/../.."
mode="${1:-run}"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_updated=""
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
      say "need Debian packages: $* - install them (apt-get install $*) and run again"; exit 1
    fi
  else SUDO=""; fi
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if [ "$mode" = test ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
  # promtool checks and tests the rules; prometheus scrapes the stack in the dashboards' e2e test (its own port)
  { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # headless checks of intake's HTML pages
fi
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  say "Python 3.11+ is required (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 1
fi
if command -v uv >/dev/null 2>&1; then UV=(uv); else
  "$PY" -m uv --version >/dev/null 2>&1 || { say "pip install uv"; "$PY" -m pip install -q uv; }
  UV=("$PY" -m uv)
fi
say "uv sync (locked)"
# bytecode compiled once here: a worker otherwise compiles ~1 s of sources at every start (and never caches
# it where PYTHONDONTWRITEBYTECODE is set), which a restart after a crash pays before it reads a record
UV_PYTHON_DOWNLOADS=never "${UV[@]}" sync --frozen --quiet --compile-bytecode --python "$(command -v "$PY")"
.venv/bin/python -m compileall -q -j 0 shared services deploy bench >/dev/null

say "Kafka broker jars (Maven, cached after the first run)"
.venv/bin/python deploy/local/kafka_local.py fetch >/dev/null
