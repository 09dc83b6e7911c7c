#!/usr/bin/env bash
# The whole test suite: installs missing system packages (as root), then
# rustfmt, clippy and rustdoc with warnings denied, and every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# python3 runs the table check; its venv module makes the RPyC venv below.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
pkg-config --exists glib-2.0 2>/dev/null || need+=(libglib2.0-dev)
# The benchmark's capnp-rpc baseline generates its code with capnp's compiler.
command -v capnp >/dev/null 2>&1 || need+=(capnproto)
# The GTK demo (its own workspace) also needs GTK 4 and Xvfb: installed
# like the rest as root, otherwise only that demo is skipped.
gtk_need=()
pkg-config --exists gtk4 2>/dev/null || gtk_need+=(libgtk-4-dev)
command -v xvfb-run >/dev/null 2>&1 || gtk_need+=(xvfb xauth)
if [ "$(id -u)" = 0 ] && [ ${#gtk_need[@]} -gt 0 ]; then
  need+=("${gtk_need[@]}")
  gtk_need=()
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing system packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "missing system packages; run this, then again:"
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}"
    exit 1
  fi
fi

echo "== benchmark tables (README.md, benches/README.md) match the run they quote"
python3 scripts/bench-tables --check
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The workspace builds netref with its "tls" feature (the conformance
# suite enables it); netref alone builds without it.
echo "== netref without its optional features: clippy and doc"
cargo clippy -p netref --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc -p netref --no-deps --locked --quiet
# The RPyC interop tests run against the real rpyc 6.0.2 from PyPI, in a
# venv made once under target/; without it they print that they skipped.
rpyc_venv="$PWD/target/rpyc-venv"
has_rpyc() { "$rpyc_venv/bin/python" -c 'import sys, rpyc; sys.exit(rpyc.__version__ != "6.0.2")' >/dev/null 2>&1; }
if ! has_rpyc; then
  echo "== making $rpyc_venv with rpyc 6.0.2 from PyPI"
  rm -rf "$rpyc_venv"
  python3 -m venv "$rpyc_venv" && "$rpyc_venv/bin/pip" install -q rpyc==6.0.2 || true
fi
if has_rpyc; then
  export NETREF_RPYC_PYTHON="$rpyc_venv/bin/python"
else
  echo "== SKIPPED the RPyC interop checks: could not make a venv with rpyc 6.0.2 (python3 -m venv, pip from PyPI)"
fi

echo "== cargo test"
cargo test --workspace --locked
echo "== the benchmark, quick (it keeps building and running; the full run is bash benches/run.sh)"
bash benches/run.sh --quick > /dev/null
if has_rpyc; then
  echo "== demos/python/run.sh: netref and Python's rpyc calling each other"
  bash demos/python/run.sh rust-client
  bash demos/python/run.sh python-client
fi
echo "== cargo package (the publishable crates)"
cargo package --locked --no-verify --allow-dirty --quiet \
  -p netref-macros -p netref -p netref-mio -p netref-polling -p netref-calloop -p netref-glib

if [ ${#gtk_need[@]} -gt 0 ]; then
  echo "== SKIPPED demos/gtk-filemon: missing ${gtk_need[*]}. To test it too, run:"
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${gtk_need[*]}"
else
  # Shares the root's target dir, so netref and glib are built once.
  gtk=(--manifest-path demos/gtk-filemon/Cargo.toml)
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  echo "== demos/gtk-filemon: cargo fmt --check"
  cargo fmt "${gtk[@]}" --check
  echo "== demos/gtk-filemon: cargo clippy -D warnings"
  cargo clippy "${gtk[@]}" --all-targets --locked -- -D warnings
  echo "== demos/gtk-filemon: cargo test (under Xvfb)"
  xvfb-run -a cargo test "${gtk[@]}" --locked
fi
