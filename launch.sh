#!/usr/bin/env bash
# Atelier launcher for Linux. Double-click it, or run: ./launch.sh [flags for app.py]
#   1. find Python   2. choose the torch build (CUDA when nvidia-smi sees an NVIDIA GPU, for its driver; CPU otherwise)
#   3. create .venv beside the app   4. install torch and requirements.txt, and record the build pip really installed
#   5. start the app, which opens the browser.
# Step 4 runs again only when requirements.txt or the torch choice changed.
# A first argument --install-only stops after step 4; --torch-choice prints the choice of step 2 and stops.
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

# 2. torch: which build. CUDA builds need a recent enough NVIDIA driver: torch's default CUDA 13 wheels want 580 or
#    newer; CUDA 12.8 wheels run on 525 and newer (CUDA's minor-version compatibility). Older drivers get a message.
driver_major() {
  nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | cut -d. -f1 | tr -dc '0-9'
}
TORCH_KIND="${ATELIER_TORCH:-}"
if [ -z "$TORCH_KIND" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "GPU"; then TORCH_KIND=cuda; else TORCH_KIND=cpu; fi
fi
case "$TORCH_KIND" in
  cuda)
    TORCH_INDEX="${ATELIER_TORCH_INDEX:-}"
    DRIVER="$(driver_major || true)"
    if [ -z "$TORCH_INDEX" ] && [ -n "$DRIVER" ]; then
      if [ "$DRIVER" -lt 525 ]; then
        echo "[atelier] your NVIDIA driver ($DRIVER) is too old for PyTorch $TORCH_VERSION: install driver 580 or newer" >&2
        echo "          (525 at the least) from https://www.nvidia.com/Download/index.aspx, or run with ATELIER_TORCH=cpu." >&2
        exit 1
      elif [ "$DRIVER" -lt 580 ]; then
        # Below 580 the default CUDA 13 wheels would fail at the first GPU call.
        TORCH_INDEX="https://download.pytorch.org/whl/cu128"
      fi
    fi
    ;;
  cpu) TORCH_INDEX="${ATELIER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" ;;
  skip) TORCH_INDEX="" ;;
  *) echo "ATELIER_TORCH must be cuda, cpu or skip, not '$TORCH_KIND'" >&2; exit 1 ;;
esac
if [ "${1:-}" = "--torch-choice" ]; then
  echo "torch=$TORCH_KIND index=${TORCH_INDEX:-pypi} driver=${DRIVER:-none}"
  exit 0
fi

# 3. Virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  echo "[atelier] creating the virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
VENV_PYTHON="$VENV/bin/python"

# 4. Install, unless this exact set-up is already there
WANTED="torch=$TORCH_KIND $TORCH_VERSION torchvision=$TORCHVISION_VERSION $TORCH_INDEX; requirements=$("$VENV_PYTHON" -c 'import hashlib,sys;print(hashlib.sha256(open("requirements.txt","rb").read()).hexdigest())')"
if [ "$(head -1 "$STAMP" 2>/dev/null || true)" = "$WANTED" ]; then
  echo "[atelier] environment up to date ($(sed -n 2p "$STAMP")); skipping installation"
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
  # What pip really installed, which is not always what was asked: with the CPU index unreachable, pip takes PyPI's
  # CUDA build (several GB) without a word.
  INSTALLED="$("$VENV_PYTHON" -c 'import torch; print(torch.__version__, "CUDA " + torch.version.cuda if torch.version.cuda else "CPU")' 2>/dev/null || echo "none")"
  echo "installed: torch $INSTALLED" >> "$STAMP"
  echo "[atelier] installed torch $INSTALLED build"
  case "$TORCH_KIND:$INSTALLED" in
    cpu:*CUDA*) echo "[atelier] note: the CPU build was asked for, but pip installed a CUDA build (the CPU index was unreachable); it runs on the CPU too, only bigger." ;;
    cuda:*CPU) echo "[atelier] warning: a CUDA build was asked for, but pip installed the CPU build; the GPU will not be used. Set ATELIER_TORCH_INDEX to a PyTorch CUDA index." ;;
  esac
fi

if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi

# 5. Start
exec "$VENV_PYTHON" app.py "$@"
