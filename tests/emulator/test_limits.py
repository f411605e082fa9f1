"""The emulator bounds what a client can make it hold: body size, JSON nesting, connections,
idle time, and file descriptors (issue 11 item 2), against real processes on loopback."""

from __future__ import annotations

import resource
import socket
import time

import httpx2

from daemons.emulator.testing import RunningEmulator, start_launcher

LIMIT = 2_000_000  # TGI's default --payload-limit


def post(emu: RunningEmulator, content: bytes) -> httpx2.Response:
    return httpx2.post(f"{emu.base_url}/generate", content=content,
                       headers={"content-type": "application/json"}, timeout=30)


def test_bodies_over_tgis_payload_limit_get_413(emulator: RunningEmulator) -> None:
    under = b'{"inputs": "' + b"a" * (LIMIT - 100) + b'", "parameters": {"max_new_tokens": 1}}'
    assert post(emulator, under).status_code == 200  # one 2 MB word is one token
    over = b'{"inputs": "' + b"a" * LIMIT + b'"}'
    resp = post(emulator, over)
    assert resp.status_code == 413 and "length limit exceeded" in resp.text

    def chunks() -> object:  # no content-length: counted as it arrives
        yield b'{"inputs": "'
        for _ in range(LIMIT // 65536 + 1):
            yield b"a" * 65536
        yield b'"}'

    resp = httpx2.post(f"{emulator.base_url}/generate", content=chunks(),  # type: ignore[arg-type]
                       headers={"content-type": "application/json"}, timeout=30)
    assert resp.status_code == 413
    assert httpx2.get(f"{emulator.base_url}/health", timeout=10).status_code == 200


def test_json_nesting_is_bounded(emulator: RunningEmulator) -> None:
    ok = b'{"inputs": "a b", "parameters": {"max_new_tokens": 1}, "x": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert post(emulator, ok).status_code == 200
    for depth in (200, 100_000):
        resp = post(emulator, b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}")
        assert resp.status_code == 400 and "recursion limit" in resp.text, (depth, resp.text[:200])
    assert httpx2.get(f"{emulator.base_url}/health", timeout=10).status_code == 200


def raw_get(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    return s


def test_connections_and_idle_time_are_limited() -> None:
    with start_launcher(["--model-id", "facebook/opt-125m", "--max-connections", "8", "--keep-alive-s", "1"]) as emu:
        held = [socket.create_connection(("127.0.0.1", emu.port), timeout=10) for _ in range(8)]
        try:
            deadline = time.monotonic() + 10
            status = 0
            while status != 503 and time.monotonic() < deadline:  # the server sees all 8 first
                status = httpx2.get(f"{emu.base_url}/health", timeout=10).status_code
            assert status == 503
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 10
        while httpx2.get(f"{emu.base_url}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline
        idle = raw_get(emu.port)
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        assert idle.recv(4096) == b""  # closed by the server once idle for keep_alive_s
        assert time.monotonic() - began < 8
        idle.close()


def test_running_out_of_file_descriptors_is_one_line_not_a_flood() -> None:
    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with start_launcher(preexec_fn=few_fds) as emu:
        held = []
        try:
            for _ in range(150):  # past the 64 descriptors: accept() fails with EMFILE
                held.append(socket.create_connection(("127.0.0.1", emu.port), timeout=10))
            time.sleep(3)  # the accept loop retries (and fails) every second meanwhile
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 20
        while httpx2.get(f"{emu.base_url}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline  # serves again once descriptors are back
            time.sleep(0.2)
        log = emu.stderr_text()
        assert "Traceback" not in log, log[-3000:]
        emfile = [ln for ln in log.splitlines() if "EMFILE" in ln]
        assert 1 <= len(emfile) <= 3, log[-3000:]
        assert "LimitNOFILE" in emfile[0]
