#!/usr/bin/env bash
# Build the wheelhouse Ansible installs from: a wheel of this checkout (working tree, build
# outputs excluded) plus wheels of its dependencies at the versions of the controller's venv,
# so targets install offline (pip --no-index) exactly what was tested here.
#   bash scripts/wheelhouse.sh [DIR]     (default: ansible/.wheelhouse)
# Prints "changed" when DIR's content changed, so the playbook can report it truthfully.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/ansible/.wheelhouse}")
# the controller's Python: its venv holds the dependency versions that were tested
python=${PYTHON:-$repo/.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src" "$tmp/new" "$out"
(cd "$repo" && git ls-files -z -co --exclude-standard -- pyproject.toml README.md daemons cli \
    | tar --null -T - -cf -) | tar -xf - -C "$tmp/src"
# Same bytes for the same sources: fixed zip timestamps (1980-01-01, zip's epoch), neither
# now nor the last commit's time, so only a change of content gives a new wheel.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$tmp/new" "$tmp/src" >&2
"$python" -m pip freeze --exclude-editable | grep -v '^schedctl' > "$tmp/constraints.txt"
wheel=$(ls "$tmp"/new/schedctl-*.whl)
# Dependencies: from the wheelhouse itself when it already has them (offline), else from the index.
if ! "$python" -m pip wheel --quiet --no-index --find-links "$out" --wheel-dir "$tmp/new" \
        -c "$tmp/constraints.txt" "$wheel" >/dev/null 2>&1; then
    "$python" -m pip wheel --quiet --wheel-dir "$tmp/new" -c "$tmp/constraints.txt" "$wheel" >&2
fi
changed=0
for f in "$tmp"/new/*.whl; do
    if ! cmp -s "$f" "$out/$(basename "$f")"; then cp "$f" "$out/"; changed=1; fi
done
for f in "$out"/*.whl; do
    if [ ! -e "$tmp/new/$(basename "$f")" ]; then rm -f "$f"; changed=1; fi
done
[ "$changed" = 1 ] && echo changed || echo unchanged
