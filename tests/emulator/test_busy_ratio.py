"""`schedctl_emulator_busy_ratio`: the emulated GPU's compute utilisation on /metrics."""

from __future__ import annotations

import threading
import time

import httpx2

from daemons.emulator.testing import RunningEmulator

GAUGE = "schedctl_emulator_busy_ratio"


def gauge(http: httpx2.Client) -> float:
    line = next(ln for ln in http.get("/metrics").text.splitlines() if ln.startswith(GAUGE + " "))
    return float(line.split()[1])


def test_gauge_rises_while_generating_and_falls_when_idle(emulator: RunningEmulator) -> None:
    with httpx2.Client(base_url=emulator.base_url, timeout=60) as http:
        text = http.get("/metrics").text
        assert f"# TYPE {GAUGE} gauge" in text.splitlines()
        idle_deadline = time.monotonic() + 10
        while gauge(http) != 0.0:  # a previous test's steps slide out within a second
            assert time.monotonic() < idle_deadline
            time.sleep(0.1)
        body = {"inputs": "hello " * 10, "parameters": {"max_new_tokens": 1500}}
        worker = threading.Thread(target=lambda: httpx2.post(f"{emulator.base_url}/generate", json=body,
                                                             timeout=120))
        worker.start()
        try:
            peak, deadline = 0.0, time.monotonic() + 30
            while worker.is_alive() and time.monotonic() < deadline and peak < 0.5:
                peak = max(peak, gauge(http))
                time.sleep(0.1)
            assert peak >= 0.5
        finally:
            worker.join(120)
        deadline = time.monotonic() + 10
        while gauge(http) != 0.0:
            assert time.monotonic() < deadline, "busy ratio did not fall back to 0 once idle"
            time.sleep(0.1)
