"""The ground floor: what every layer of schedctl may use, built on the standard library alone.

- `errors`: the one exception tree (`SchedctlError` and its branches);
- `settings`: TOML sections and environment overrides into frozen dataclasses;
- `logs`: logging to journald or stderr, rate limits, quiet libraries;
- `sdnotify`: systemd's readiness and watchdog protocol;
- `schema` and `messages`: the plain message dataclasses and their bounds checks;
- `process`: launching a daemon, waiting until it answers, stopping it with escalation.

Nothing here imports ZeroMQ, msgpack or a web server (a test checks it), so a policy, a
profile or the report can raise a `ConfigError` without loading the wire.
"""
