#!/usr/bin/env bash
# Set up (if needed) and run the main job on the bundled data: `dpsynth demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/dpsynth" demo "$@"
