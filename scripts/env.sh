# Source this: creates ./.venv on first use and installs bptt into it (editable) with the given extra.
# Usage: source scripts/env.sh EXTRA   e.g. `source scripts/env.sh test`, or `core` for none.
# (Always pass EXTRA: a sourced file without arguments sees the caller's arguments as its own.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:?usage: source scripts/env.sh EXTRA (test, or core for none)}"
[ "$extra" = core ] && extra=""
venv="${BPTT_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "setting up $venv (first run only)" >&2
  "$python" -m venv "$venv"
fi
spec="$root"
[ -n "$extra" ] && spec="$root[$extra]"
# Reinstall only when the project's dependencies change.
stamp="$venv/.bptt-installed-${extra:-core}"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
