#!/usr/bin/env bash
# The whole test suite: installs missing system packages (as root), then
# rustfmt, clippy and rustdoc with warnings denied, and every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists glib-2.0 2>/dev/null || need+=(libglib2.0-dev)
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
echo "== cargo test"
cargo test --workspace --locked
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
