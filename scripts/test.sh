#!/usr/bin/env bash
# Set up (if needed) and run the test suite.  Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` to skip the slow tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q "$@"
