#!/usr/bin/env bash
# Builds the benchmark harness and runs it; options go to the harness:
#   bash benches/run.sh            # full run (< 10 min on 2 cores), RPyC venv made under target/
#   bash benches/run.sh --quick    # smoke run, a few seconds, netref and raw only (for CI)
#   bash benches/run.sh --only latency,payload --secs 3
# Writes target/bench-report.md and target/bench-report.svg; after a full run,
# `python3 scripts/bench-tables` puts the report's tables into both READMEs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p netref-benches --bin harness
exec target/release/harness "$@"
