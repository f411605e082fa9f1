"""`schedctl logs`: the daemons' journal lines, filtered by unit, request, node and time.

A thin layer over `journalctl -o json`: filters become journal field matches
(SCHEDCTL_REQUEST_ID=..., SCHEDCTL_NODE=...), so the journal's indexes do the work.
Several sources (hosts over ssh, journal directories such as a container's
/proc/PID/root/run/log/journal) are queried one after the other and merged by time, so
one request can be followed across the coordinator, the node and the load generator.

Where there is no journal of schedctl's units (a laptop, a container, a local experiment
run, whose daemons run outside systemd), it reads the daemon logs of the latest local run
instead (`results/<run>/daemons/*.log`, or `--run DIR`) and says so. A host that cannot be
reached is one `error:` line and exit status 2, never an empty answer.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import exit_on_config_error
from cli.run_logs import DAEMONS, latest_run, read_run
from daemons.core.errors import ConfigError

DEFAULT_UNITS = ("schedctl-*", "tgi@*", "emulator@*")
SHOWN_FIELDS = ("SCHEDCTL_REQUEST_ID", "SCHEDCTL_NODE", "SCHEDCTL_MODEL", "SCHEDCTL_ACTION", "SCHEDCTL_DECISION_MS")


def journalctl_args(units: list[str], request_id: str | None, node: str | None, since: str | None,
                    lines: int | None, follow: bool) -> list[str]:
    args = ["journalctl", "--no-pager", "-o", "json"]
    for unit in units:
        args += ["-u", unit]
    if request_id:
        args.append(f"SCHEDCTL_REQUEST_ID={request_id}")
    if node:
        args.append(f"SCHEDCTL_NODE={node}")
    if since:
        args += ["--since", since]
    if lines is not None:
        args += ["-n", str(lines)]
    if follow:
        args.append("-f")
    return args


def sources(hosts: list[str], machines: list[str], directories: list[str],
            roots: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """(label, command prefix) per journal to read; the local journal when none is named."""
    out: list[tuple[str, list[str]]] = [(h, ["ssh", "-o", "BatchMode=yes", h, "--"]) for h in hosts]
    out += [(m, ["-M", m]) for m in machines]
    out += [(d, ["-D", d]) for d in directories]
    out += [(r, ["--root", r]) for r in roots or []]
    return out or [("", [])]


def command(prefix: list[str], args: list[str]) -> list[str]:
    if prefix[:1] == ["ssh"]:  # the remote shell parses the command line again
        return [*prefix, shlex.join(args)]
    return [args[0], *prefix, *args[1:]]


def matching(seen: list[str], patterns: list[str]) -> list[str]:
    """The units of `seen` that the names or globs in `patterns` match."""
    return sorted({u for p in patterns for u in seen if fnmatch.fnmatchcase(u, p)})


def expand_units(patterns: list[str], prefix: list[str], label: str = "") -> list[str]:
    """Unit globs -> the unit names this journal holds. journalctl fails ("No data available")
    on a glob that matches no unit it has seen, e.g. tgi@* on a host without GPUs."""
    if not any(ch in p for p in patterns for ch in "*?["):
        return patterns
    return sorted(set(matching(units_seen(prefix, label), patterns)) |
                  {p for p in patterns if not any(ch in p for ch in "*?[")})


SSH_FAILED = 255  # ssh's own failure (cannot resolve, connect or log in), not the remote command's


def units_seen(prefix: list[str], label: str = "") -> list[str]:
    """The units this journal has lines of; [] when there is no journal. A host that cannot be
    reached, or a missing ssh or journalctl where one was named, is a ConfigError naming the fix."""
    cmd = command(prefix, ["journalctl", "--no-pager", "-F", "_SYSTEMD_UNIT"])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        if prefix:
            raise ConfigError(f"{cmd[0]} not found: reading {label} needs {cmd[0]} on this host") from None
        return []  # no journalctl here: no journal
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{label or 'journalctl'} did not answer within 60 s: check that it is up") from None
    err = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit status {out.returncode}"
    if prefix[:1] == ["ssh"] and out.returncode == SSH_FAILED:
        raise ConfigError(f"cannot reach {label} over ssh ({err}): check the host name and that "
                          f"`ssh {label} true` works without a password")
    if out.returncode != 0 and prefix:
        raise ConfigError(f"cannot read the journal of {label} ({err}): check that it exists and you may read it")
    return out.stdout.split()


def read(cmd: list[str]) -> Iterator[dict[str, Any]]:
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise ConfigError(f"{cmd[0]} not found: schedctl logs needs journalctl (systemd) or ssh") from None
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue
    err = proc.stderr.read().strip()
    if proc.wait() not in (0, 1) or (proc.returncode == 1 and err):  # 1 with no message = no entries
        raise ConfigError(f"{shlex.join(cmd)} failed: {err.splitlines()[-1] if err else proc.returncode}")


def render(entry: dict[str, Any], label: str) -> str:
    usec = int(entry.get("__REALTIME_TIMESTAMP", 0))
    when = datetime.fromtimestamp(usec / 1e6).isoformat(sep=" ", timespec="milliseconds")
    host = entry.get("_HOSTNAME") or label or "-"
    unit = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER", "-")
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):  # journalctl emits non-UTF-8 values as byte arrays
        message = bytes(message).decode("utf-8", "replace")
    fields = " ".join(f"{k[9:].lower()}={entry[k]}" for k in SHOWN_FIELDS if k in entry)
    return f"{when} {host} {unit}: {message}" + (f"  [{fields}]" if fields else "")


@exit_on_config_error
def logs(
    unit: Annotated[list[str] | None, typer.Option("--unit", "-u", help="Unit or glob (repeatable); "
                                                   "default: schedctl-*, tgi@*, emulator@*.")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", "-r", help="Only this request's lines.")] = None,
    node: Annotated[str | None, typer.Option("--node", help="Only lines about this node.")] = None,
    since: Annotated[str | None, typer.Option("--since", "-S", help="e.g. '-10min', 'today', '2026-01-01 12:00'.")]
    = None,
    lines: Annotated[int | None, typer.Option("--lines", "-n", help="Only the last N lines per source.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (one source only).")]
    = False,
    host: Annotated[list[str] | None, typer.Option("--host", "-H", help="Read the journal of [user@]HOST over "
                                                   "ssh (repeatable).")] = None,
    machine: Annotated[list[str] | None, typer.Option("--machine", "-M", help="A local container registered "
                                                      "with machined (repeatable).")] = None,
    directory: Annotated[list[str] | None, typer.Option("--directory", "-D", help="A journal directory "
                                                        "(repeatable).")] = None,
    root: Annotated[list[str] | None, typer.Option("--root", help="The journals under a root directory, e.g. a "
                                                   "container's /proc/PID/root (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One journal entry per line, as journalctl prints it.")]
    = False,
    run: Annotated[Path | None, typer.Option("--run", help="Read a local run's daemon logs (DIR/daemons/*.log) "
                                             "instead of a journal.")] = None,
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Where to find the latest local run when "
                                              "there is no journal.")] = Path("results"),
) -> None:
    """Show the daemons' log lines from the journal, merged across hosts by time.

    Without a journal of schedctl's units here (a local `schedctl experiment run` runs its
    daemons outside systemd), it reads the latest local run's daemon logs instead
    (results/<run>/daemons/*.log; --run DIR picks one) and says which it read. Per-request
    lines are DEBUG: a deployment or run at INFO logs none.

    Examples:

    \b
      schedctl logs --request-id r000042
      schedctl logs -u schedctl-node.service --node gpu-1 --since -10min
      schedctl logs -H root@gpu-1 -H root@gpu-2 -H root@coord --request-id r000042
      schedctl logs -u schedctl-coordinator.service -f
      schedctl logs --run results/quick_centralized_20260101_120000 --node node-1
    """
    todo = sources(host or [], machine or [], directory or [], root or [])
    if follow and len(todo) > 1:
        raise ConfigError("--follow reads one source at a time: name a single --host, --machine, --directory "
                          "or --root")
    if run is not None:
        _print_run(run, request_id, node, lines)
        return
    local = todo == [("", [])]
    if local and not matching(units_seen([]), unit or list(DEFAULT_UNITS)):  # none here: the local runs' logs
        latest = latest_run(results_dir)
        if latest is None:
            raise ConfigError(f"no journal of schedctl's units on this host and no local run logs in "
                              f"{results_dir}/*/{DAEMONS}/: name a host (-H) or a run (--run DIR)")
        typer.echo(f"no journal of schedctl's units on this host: reading the latest local run's daemon logs, "
                   f"{latest / DAEMONS}/*.log", err=True)
        _print_run(latest, request_id, node, lines)
        return
    entries: list[tuple[dict[str, Any], str]] = []
    for label, prefix in todo:
        units = expand_units(unit or list(DEFAULT_UNITS), prefix, label)
        if not units:
            typer.echo(f"{label or 'this host'}: no lines of {', '.join(unit or DEFAULT_UNITS)} in its journal",
                       err=True)
            continue
        args = journalctl_args(units, request_id, node, since, lines, follow)
        for entry in read(command(prefix, args)):
            if follow:
                _print(entry, label, as_json)
            else:
                entries.append((entry, label))
    entries.sort(key=lambda e: int(e[0].get("__REALTIME_TIMESTAMP", 0)))
    for entry, label in entries:
        _print(entry, label, as_json)


def _print_run(run_dir: Path, request_id: str | None, node: str | None, last: int | None) -> None:
    if not (run_dir / DAEMONS).is_dir():
        raise ConfigError(f"{run_dir} holds no {DAEMONS}/ directory: pass a results directory written by "
                          "`schedctl experiment run`")
    found = read_run(run_dir, request_id, node, last)
    for line in found:
        sys.stdout.write(line.render() + "\n")
    if not found:
        typer.echo(f"no matching lines in {run_dir / DAEMONS}/*.log", err=True)


def _print(entry: dict[str, Any], label: str, as_json: bool) -> None:
    sys.stdout.write((json.dumps(entry) if as_json else render(entry, label)) + "\n")
    sys.stdout.flush()
