# Sourced by scripts/inspectr and scripts/test: makes (once) and activates a virtualenv with
# inspectr's dependencies. The venv lives outside the checkout, keyed on the dependency list
# and the Python version, so fresh clones (CI) reuse it until the dependencies change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
KEY="$( { sed -n '/^dependencies = \[/,/^\]/p; /^test = /p' "$ROOT/pyproject.toml"; "$PY" -c 'import sys; print(sys.version_info[:2])'; } | sha256sum | cut -c1-16)"
VENV="${INSPECTR_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/inspectr/venv-$KEY}"
if [ ! -f "$VENV/.complete" ]; then
  echo "inspectr: setting up $VENV (first run: torch + torchvision, a few minutes)" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel >&2
  # torch and torchvision unpinned together: the resolver picks a matching pair
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]" >&2
  touch "$VENV/.complete"
fi
# point the venv's inspectr (and its console script) at this checkout; cheap when already there
if ! "$VENV/bin/python" -c "import inspectr, sys, os; sys.exit(0 if os.path.dirname(os.path.dirname(inspectr.__file__)) == '$ROOT' else 1)" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >&2
fi
export PATH="$VENV/bin:$PATH"
