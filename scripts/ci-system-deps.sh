#!/usr/bin/env bash
# Debian packages the system test (tests/system, real systemd hosts via systemd-nspawn)
# needs: systemd-container (systemd-nspawn), iproute2 (ip netns), util-linux (nsenter),
# nftables (nft: partition faults on a deployed host); and for tests/metrics, prometheus
# (promtool: `promtool check metrics` on every daemon's /metrics, `check config` on the scrape file);
# chromium (headless: the run timeline, timeline.html, must render without a script error);
# tmux (`schedctl watch` driven in a real terminal).
# Idempotent and quick when they are already there; a no-op without root or apt-get
# (the test then skips and says why).
set -euo pipefail
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v nft >/dev/null || need+=(nftables)  # partition faults on the deployed (nspawn) hosts
command -v promtool >/dev/null || need+=(prometheus)  # promtool, for tests/metrics
command -v chromium >/dev/null || need+=(chromium)  # tests/report/test_timeline.py renders timeline.html
command -v tmux >/dev/null || need+=(tmux)  # tests/watch/test_terminal.py drives `schedctl watch` in a real terminal
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ci-system-deps: missing ${need[*]} and cannot install them (not root or no apt-get)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
