#!/usr/bin/env bash
# netref and Python's rpyc 6, each calling the other, from one command:
#
#   bash demos/python/run.sh rust-client    # netref client of the Python FileMonitor service
#   bash demos/python/run.sh python-client  # Python client of the Rust FileMonitor service
#
# Uses target/rpyc-venv (made with rpyc 6.0.2 from PyPI if missing, as
# scripts/test.sh does). scripts/test.sh runs both.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="$PWD/target/rpyc-venv"
if ! "$venv/bin/python" -c 'import rpyc' >/dev/null 2>&1; then
  echo "== making $venv with rpyc 6.0.2 from PyPI"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q rpyc==6.0.2
fi
python="$venv/bin/python"
file="$(mktemp -d)/floop.bloop"
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; rm -rf "$(dirname "$file")"; }
trap cleanup EXIT

# Starts a server in the background and waits for its first line, which
# names its port (read from the pipe: no polling); the rest of its output
# is drained so that it never blocks on a full pipe.
start() {
  exec 3< <(exec "$@")
  server=$!
  IFS= read -r line <&3 || { echo "the server did not start"; exit 1; }
  port="$(grep -oE '[0-9]+$' <<<"$line" || true)"
  [ -n "$port" ] || { echo "the server said \"$line\", not its port"; exit 1; }
  cat <&3 >/dev/null &
}

case "${1:-}" in
  rust-client)
    cargo build -q -p netref --example python_filemon
    start "$python" demos/python/filemon_service.py --port 0
    echo "== Python's FileMonitor service on port $port; netref's client:"
    target/debug/examples/python_filemon --port "$port" "$file"
    ;;
  python-client)
    cargo build -q -p filemon
    start target/debug/filemon server --addr 127.0.0.1:0 --interval-ms 100
    echo "== netref's FileMonitor service on port $port; Python's client:"
    "$python" demos/python/filemon_client.py --port "$port" "$file"
    ;;
  *)
    echo "usage: bash demos/python/run.sh rust-client|python-client"; exit 2 ;;
esac
