#!/usr/bin/env bash
# Run bptt's checks: lint, then the whole test suite (PyTorch CPU is the gradient oracle).
source "$(dirname "$0")/env.sh" test
source scripts/chromium.sh  # the report's browser test needs it (Debian's package, when missing)
ruff check src tests examples benchmarks
ruff format --check src tests examples benchmarks
python -m pytest "$@"
