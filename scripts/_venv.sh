# Sourced by the README's commands: creates or updates .venv/ in the repo root.
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source "$ROOT/scripts/_steps.sh"
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "scalegroup needs Python 3.11 or newer; '$PYTHON' was not found." >&2
  echo "Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "scalegroup needs Python 3.11 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1)." >&2
  echo "Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.scalegroup-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing scalegroup and its development tools into .venv (pip; a few minutes the" \
    "first time, the log in .venv/install.log)"
  run_quietly "installing into .venv" .venv/install.log \
    sh -c ".venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install --editable '.[dev]'" || exit 1
  echo "$want" >"$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
