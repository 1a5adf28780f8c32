#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu).
# It makes a virtual environment with the pinned dependencies in $AUTOGRADER_ROOT/venv.
# torch comes first: a CUDA build when nvidia-smi finds a GPU, else the CPU build from
# PyTorch's CPU wheel index (a plain pin on PyPI would pull the multi-GB CUDA build).
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="$ROOT/venv"
TORCH_VERSION="@TORCH_VERSION@"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-venv python3-pip
fi
if ! python3 -c "import sys; sys.exit(sys.version_info < (3, 11))"; then
  echo "setup.sh: Python 3.11 or newer is needed (the pinned numpy, pandas and transformers refuse older ones);" \
       "choose a newer base image (Ubuntu 24.04)" >&2
  exit 1
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  echo "setup.sh: GPU found, installing the CUDA build of torch $TORCH_VERSION"
  "$VENV/bin/python" -m pip install "torch==$TORCH_VERSION"
else
  echo "setup.sh: no GPU, installing the CPU build of torch $TORCH_VERSION"
  "$VENV/bin/python" -m pip install "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX"
fi
"$VENV/bin/python" -m pip install -r "$SOURCE/requirements.txt"
"$VENV/bin/python" -c "import torch, pytest, nbformat; print('setup.sh: torch', torch.__version__, 'ready')"
# The bytecode every grading run would otherwise compile afresh (grading writes none): once, here.
(cd "$SOURCE" && "$VENV/bin/python" -m autograder precompile @ASSIGNMENT@) \
  || echo "setup.sh: precompiling failed; grading compiles as it goes" >&2

# Student code runs in a worker process as this user (autograder/sandbox/process.py): no home,
# no login shell. It must be able to run the venv's Python, and must not read source/.
WORKER_USER="${AUTOGRADER_WORKER_USER:-autograder-worker}"
if [ "$(id -u)" = 0 ]; then
  if ! id "$WORKER_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$WORKER_USER"
  fi
  chmod 755 "$ROOT"
  chmod -R o+rX "$VENV"
  chmod 700 "$SOURCE"
  echo "setup.sh: student code will run as $WORKER_USER"
fi
