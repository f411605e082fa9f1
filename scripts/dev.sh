#!/usr/bin/env bash
# One entry point for a fresh clone: creates the virtual environment (once), installs what
# the command needs, then runs it.
#   bash scripts/dev.sh run [schedctl experiment run flags...]   the main job (runtime dependencies only)
#   bash scripts/dev.sh test [pytest args...]                     ruff, mypy and the test suite (adds the dev extras)
# SCHEDCTL_VENV picks another environment directory (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SCHEDCTL_VENV:-.venv}"
cmd="${1:-test}"; shift || true
case "$cmd" in
    run)  target='.' ;;        # the runtime: what `schedctl experiment run` imports
    test) target='.[dev]' ;;   # plus pytest, linters, Ansible (the system test), hypothesis
    *) echo "usage: bash scripts/dev.sh run|test [args...]" >&2; exit 2 ;;
esac
# One stamp per (pyproject.toml, target): editing pyproject.toml or asking for the extras reinstalls.
stamp="$venv/.installed-$cmd-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e "$target"
    touch "$stamp"
fi
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
export PATH="$venv/bin:$PATH"
case "$cmd" in
    run)  exec schedctl experiment run "$@" ;;
    test)
        ruff check daemons cli tests scripts
        mypy
        exec pytest "$@" ;;
esac
