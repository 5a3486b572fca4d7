#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up .venv exactly as launch.sh does, add the test tools
# (playwright, and Chromium for the browser tests), then run pytest.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
bash launch.sh --install-only
.venv/bin/python -m pip install -q -r requirements-test.txt
if [ -z "${ATELIER_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "[tests] installing Chromium (Debian's package) for the browser tests"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi
exec .venv/bin/python -m pytest "$@"
