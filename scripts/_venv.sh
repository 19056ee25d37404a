# Sourced by scripts/inspectr and scripts/test: makes (once) and activates a virtualenv with
# inspectr's dependencies at the exact versions in requirements.lock (refreshed on purpose by
# scripts/lock), so a fresh clone tests what main tested, whatever the registry serves today.
# The venv lives outside the checkout, keyed on the lock and the Python version, so fresh
# clones (CI) reuse it until the lock changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
LOCK="$ROOT/requirements.lock"
KEY="$( { cat "$LOCK"; "$PY" -c 'import sys; print(sys.version_info[:2])'; } | sha256sum | cut -c1-16)"
VENV="${INSPECTR_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/inspectr/venv-$KEY}"
if [ ! -f "$VENV/.complete" ]; then
  echo "inspectr: setting up $VENV from requirements.lock (first run: torch + torchvision, a few minutes)" >&2
  MADE_FOR="$(sed -n 's/^# made-for: //p' "$LOCK")"
  HERE="$("$PY" -c 'import platform, sys; print(f"Python {sys.version_info[0]}.{sys.version_info[1]} on {platform.system()} {platform.machine()}")')"
  if [ "$MADE_FOR" != "$HERE" ]; then
    echo "inspectr: WARNING: requirements.lock was made for $MADE_FOR, this is $HERE." >&2
    echo "  Installing from it anyway; if a pin has no build here or 'pip check' fails, run" >&2
    echo "  scripts/lock with this Python (PYTHON=... scripts/lock) to resolve a lock for it." >&2
  fi
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  # pip, setuptools and wheel first: the editable install of inspectr below builds with them
  "$VENV/bin/python" -m pip install -q $(grep -E -i '^(pip|setuptools|wheel)==' "$LOCK") >&2
  # the lock is complete (scripts/lock froze a resolved venv), so no resolver runs here and
  # nothing unpinned can slip in; pip check proves it is complete for this platform
  "$VENV/bin/python" -m pip install -q --no-deps -r "$LOCK" >&2
  if ! CHECK="$("$VENV/bin/python" -m pip check 2>&1)"; then
    echo "$CHECK" >&2
    echo "inspectr: requirements.lock is incomplete for $HERE (above); run scripts/lock with this Python." >&2
    exit 1
  fi
  touch "$VENV/.complete"
fi
# point the venv's inspectr (and its console script) at this checkout; cheap when already there.
# -I: without it the caller's working directory is on sys.path, and a call from the checkout's
# root (CI's) finds ./inspectr and never installs the console script
if ! "$VENV/bin/python" -I -c "import inspectr, sys, os; sys.exit(0 if os.path.dirname(os.path.dirname(inspectr.__file__)) == '$ROOT' else 1)" 2>/dev/null; then
  # PYTHONWARNINGS: setuptools warns on every editable build that ./inspectr may shadow it
  PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
fi
export PATH="$VENV/bin:$PATH"
