#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up .venv exactly as launch.sh does, then run pytest.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
bash launch.sh --install-only
exec .venv/bin/python -m pytest "$@"
