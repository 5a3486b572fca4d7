#!/usr/bin/env bash
# Atelier launcher for Linux. Double-click it, or run: ./launch.sh [flags for app.py]
#   1. find Python   2. create .venv beside the app   3. install torch (CUDA build when nvidia-smi sees
#   an NVIDIA GPU, CPU build otherwise)   4. install requirements.txt   5. start the app, which opens the browser.
# Steps 3 and 4 run again only when requirements.txt or the torch choice changed.
# A first argument --install-only stops after step 4.
# Environment: ATELIER_TORCH=cuda|cpu|skip   ATELIER_TORCH_VERSION (default 2.14.1)
#              ATELIER_TORCHVISION_VERSION (default 0.29.1, the release paired with that torch)
#              ATELIER_TORCH_INDEX (pip index for torch)   PYTHON (interpreter that creates the venv)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

TORCH_VERSION="${ATELIER_TORCH_VERSION:-2.14.1}"
# torchvision is built against one torch release; OmniGen's image processor needs it.
TORCHVISION_VERSION="${ATELIER_TORCHVISION_VERSION:-0.29.1}"
VENV=".venv"
STAMP="$VENV/.atelier-installed"

# 1. Python
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "Atelier needs Python 3.10 or newer; install it first." >&2
  exit 1
fi

# 2. Virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  echo "[atelier] creating the virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
VENV_PYTHON="$VENV/bin/python"

# 3. torch: which build
TORCH_KIND="${ATELIER_TORCH:-}"
if [ -z "$TORCH_KIND" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "GPU"; then TORCH_KIND=cuda; else TORCH_KIND=cpu; fi
fi
case "$TORCH_KIND" in
  cuda) TORCH_INDEX="${ATELIER_TORCH_INDEX:-}" ;;  # PyPI's Linux wheels are the CUDA build
  cpu) TORCH_INDEX="${ATELIER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" ;;
  skip) TORCH_INDEX="" ;;
  *) echo "ATELIER_TORCH must be cuda, cpu or skip, not '$TORCH_KIND'" >&2; exit 1 ;;
esac

# 3-4. Install, unless this exact set-up is already there
WANTED="torch=$TORCH_KIND $TORCH_VERSION torchvision=$TORCHVISION_VERSION $TORCH_INDEX; requirements=$("$VENV_PYTHON" -c 'import hashlib,sys;print(hashlib.sha256(open("requirements.txt","rb").read()).hexdigest())')"
if [ "$(cat "$STAMP" 2>/dev/null || true)" = "$WANTED" ]; then
  echo "[atelier] environment up to date; skipping installation"
else
  if [ "$TORCH_KIND" != "skip" ]; then
    echo "[atelier] installing torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION ($TORCH_KIND build)"
    if [ -n "$TORCH_INDEX" ]; then
      # The CPU index is an extra index: its "+cpu" build outranks PyPI's CUDA build of the same version.
      "$VENV_PYTHON" -m pip install --retries 2 "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" --extra-index-url "$TORCH_INDEX"
    else
      "$VENV_PYTHON" -m pip install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
    fi
  fi
  echo "[atelier] installing requirements.txt"
  "$VENV_PYTHON" -m pip install -r requirements.txt
  echo "$WANTED" > "$STAMP"
fi

if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi

# 5. Start
exec "$VENV_PYTHON" app.py "$@"
