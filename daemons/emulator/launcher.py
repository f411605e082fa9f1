"""`schedctl-tgi-launcher`: the emulator behind TGI's `text-generation-launcher` interface.

A node agent with `backend = "tgi"` runs `text-generation-launcher` with TGI's flags.  On
a host without a GPU the deployment installs this entry point under that name, so the
node drives it exactly as it drives TGI.  It behaves as TGI's launcher does
(TGI `launcher/src/main.rs`, `docs/source/reference/launcher.md`):

- every flag also reads the environment variable of its upper-case name (`MODEL_ID`,
  `PORT`, ...); `--max-input-length` is the old name of `--max-input-tokens`;
- TGI flags the emulator has no use for (`--revision`, `--dtype`, `--num-shard`,
  `--shard-uds-path`, `--master-port`, ...) are accepted and ignored; a flag TGI does
  not have is refused with one line, as clap does (exit status 2);
- the server runs as a child process (TGI's webserver); the launcher waits for its
  `/health`, forwards SIGTERM/SIGINT to it, and exits with it: status 0 after a clean
  shutdown, 1 when the server fails (a port already in use included).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from types import FrameType
from typing import Any

from daemons.core.errors import ConfigError

log = logging.getLogger("schedctl.emulator.launcher")

#: TGI launcher flags the emulator accepts and ignores (it has no shards, weights or tracing).
IGNORED_FLAGS = (
    "revision", "sharded", "num-shard", "quantize", "speculate", "dtype",
    "kv-cache-dtype", "trust-remote-code", "max-batch-size", "cuda-graphs", "waiting-served-ratio",
    "max-waiting-tokens", "shard-uds-path", "master-addr", "master-port", "huggingface-hub-cache",
    "weights-cache-override", "disable-custom-kernels", "json-output", "otlp-endpoint", "otlp-service-name",
    "cors-allow-origin", "api-key", "watermark-gamma", "watermark-delta", "ngrok", "ngrok-authtoken",
    "ngrok-edge", "tokenizer-config-path", "disable-grammar-support", "env", "rope-scaling", "rope-factor",
    "lora-adapters", "usage-stats", "enable-prefill-logprobs", "graceful-termination-timeout",
    "prometheus-port", "prefix-caching", "attention",
)
#: Flags that carry a value into the emulator: (flag, EmulatorConfig field, type).
CONFIG_FLAGS: tuple[tuple[str, str, type], ...] = (
    ("max-concurrent-requests", "max_concurrent_requests", int),
    ("max-best-of", "max_best_of", int),
    ("max-stop-sequences", "max_stop_sequences", int),
    ("max-top-n-tokens", "max_top_n_tokens", int),
    ("max-total-tokens", "max_total_tokens", int),
    ("max-batch-prefill-tokens", "max_batch_prefill_tokens", int),
    ("max-batch-total-tokens", "max_batch_total_tokens", int),
    ("max-client-batch-size", "max_client_batch_size", int),
    ("validation-workers", "validation_workers", int),
    ("payload-limit", "payload_limit", int),
    ("cuda-memory-fraction", "cuda_memory_fraction", float),
)
READY_POLL_S = 0.1
WEBSERVER_FLAG = "--schedctl-webserver"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # clap's style: one line, exit status 2
        self.exit(2, f"error: {message}; see `text-generation-launcher --help` (TGI 3.x flags only)\n")


def _env(flag: str) -> str | None:
    return os.environ.get(flag.replace("-", "_").upper())


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="text-generation-launcher", allow_abbrev=False,
                description="schedctl's TGI emulator behind text-generation-launcher's flags.")
    p.add_argument("--model-id", default=_env("model-id") or "bigscience/bloom-560m")
    p.add_argument("-p", "--port", type=int, default=int(_env("port") or 3000))
    p.add_argument("--hostname", default=_env("hostname") or "0.0.0.0")
    p.add_argument("--max-input-tokens", "--max-input-length", dest="max_input_tokens", type=int,
                   default=_int(_env("max-input-tokens") or _env("max-input-length")))
    for flag, field, kind in CONFIG_FLAGS:
        raw = _env(flag)
        p.add_argument(f"--{flag}", dest=field, type=kind, default=kind(raw) if raw else None)
    # The emulator's own knobs (not TGI's), with the variables `schedctl start emulator` reads.
    p.add_argument("--gpu", default=os.environ.get("SCHEDCTL_EMULATOR_GPU", "a100-80gb"))
    p.add_argument("--checkpoint-tier", default=os.environ.get("SCHEDCTL_EMULATOR_CHECKPOINT_TIER", "ssd"))
    p.add_argument("--init-seconds", type=float,
                   default=float(os.environ.get("SCHEDCTL_EMULATOR_INIT_SECONDS", "5.0")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eos-rate", type=float, default=0.0)
    p.add_argument("--max-connections", type=int, default=1024, help="Connections served at once (503 beyond).")
    p.add_argument("--keep-alive-s", type=int, default=5, help="Idle keep-alive connections close after this.")
    for flag in IGNORED_FLAGS:  # with or without a value: boolean and valued flags alike
        p.add_argument(f"--{flag}", nargs="?", const="true", help=argparse.SUPPRESS)
    return p


def _int(raw: str | None) -> int | None:
    return int(raw) if raw else None


def config_from_args(argv: Sequence[str]) -> Any:
    """The EmulatorConfig the flags describe (ConfigError names a bad value)."""
    from daemons.emulator.daemon import EmulatorConfig

    ns = build_parser().parse_args(list(argv))
    values = {field: getattr(ns, field) for _, field, _ in CONFIG_FLAGS if getattr(ns, field) is not None}
    return EmulatorConfig(
        model_id=ns.model_id, port=ns.port, hostname=ns.hostname, max_input_tokens=ns.max_input_tokens,
        gpu=ns.gpu, checkpoint_tier=ns.checkpoint_tier, init_seconds=ns.init_seconds, seed=ns.seed,
        eos_rate=ns.eos_rate, max_connections=ns.max_connections, keep_alive_s=ns.keep_alive_s, **values)


def _die_with_parent() -> None:
    # The webserver must not outlive its launcher, even a SIGKILLed one (PR_SET_PDEATHSIG).
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _health(host: str, port: int) -> int | None:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=1.0) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def launch(config: Any) -> int:
    """Run the webserver child, wait until it is ready, forward signals, return its fate."""
    spec = json.dumps(dataclasses.asdict(config))
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("received %s: stopping the webserver", signal.Signals(sig).name)
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):  # before the child exists: no signal is lost
        signal.signal(sig, forward)
    child = subprocess.Popen([sys.executable, "-m", "daemons.emulator.launcher", WEBSERVER_FLAG, spec],
                             stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    if stopping:
        child.send_signal(signal.SIGTERM)
    began = time.monotonic()
    ready = False
    while child.poll() is None:
        if not ready and _health(config.hostname, config.port) == 200:
            ready = True
            log.info("Webserver ready on %s:%d after %.2f s", config.hostname, config.port,
                     time.monotonic() - began)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(READY_POLL_S if not ready else 1.0)
    code = child.returncode
    if stopping and code in (0, -signal.SIGTERM, -signal.SIGINT):
        log.info("Shutdown complete")
        return 0
    log.error("Webserver Crashed (exit status %s)%s", code, "" if ready else " before it was ready")
    return 1


def webserver(spec: str) -> None:
    from daemons.emulator.daemon import EmulatorConfig, run

    run(EmulatorConfig(**json.loads(spec)))


def main(argv: Sequence[str] | None = None) -> None:
    """Console script `schedctl-tgi-launcher` (installable as `text-generation-launcher`)."""
    from daemons.core.logs import setup_logging

    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging("emulator")
    try:
        if args[:1] == [WEBSERVER_FLAG]:
            webserver(args[1])
            return
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(launch(config))


if __name__ == "__main__":
    main()
