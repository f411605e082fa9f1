#!/usr/bin/env bash
# One entry point for a fresh clone: creates .venv (once), installs schedctl with its
# dev extras, then runs what was asked.
#   bash scripts/dev.sh run [schedctl experiment run flags...]   the main job
#   bash scripts/dev.sh test [pytest args...]                     ruff, mypy and the test suite
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e '.[dev]'
    touch "$stamp"
fi
export PATH="$PWD/$venv/bin:$PATH"
cmd="${1:-test}"; shift || true
case "$cmd" in
    run)  exec schedctl experiment run "$@" ;;
    test)
        ruff check daemons cli tests scripts
        mypy
        exec pytest "$@" ;;
    *) echo "usage: bash scripts/dev.sh run|test [args...]" >&2; exit 2 ;;
esac
