"""`schedctl status`: ask a coordinator (or one node agent) for its view and print a table.

Every daemon answers StatusRequest with StatusReply, with different rows: a coordinator
adds liveness, last-heard and pending counts to each node's state; a node agent sends its
own NodeState; a gossip peer sends its membership view (status alive/suspect/dead, record
age). Every column falls back to "-" when its field is missing.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
import zmq

from cli.errors import exit_on_config_error
from cli.experiment.remote import RemoteCluster
from cli.keys import operator_curve
from daemons.bus import decode, encode, make_socket
from daemons.bus.security import CurveClient
from daemons.core.errors import ConfigError, WireError
from daemons.core.messages import StatusReply, StatusRequest

DEFAULT_COORDINATOR = "tcp://127.0.0.1:5555"
GIB = float(1 << 30)
HEADERS = ("NODE", "STATE", "QUEUE", "IN-FLIGHT", "PENDING", "GPU MEMORY", "LAST HEARD", "MODELS")


def ask_status(endpoint: str, timeout_s: float, curve: CurveClient | None = None) -> StatusReply | None:
    """One StatusRequest to `endpoint`; None if nothing valid answers within timeout_s."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = make_socket(ctx, zmq.DEALER, curve=curve)
    try:
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise ConfigError(f"cannot connect to {endpoint!r}: {exc.strerror}: "
                              "pass an address like tcp://127.0.0.1:5555") from None
        msg_id = uuid.uuid4().hex
        sock.send(encode(StatusRequest(), f"status-{msg_id[:8]}", msg_id))
        while sock.poll(int(timeout_s * 1000)):
            try:
                env = decode(sock.recv())
            except WireError:
                continue
            if isinstance(env.body, StatusReply) and env.id == msg_id:
                return env.body
        return None
    finally:
        sock.close(0)
        ctx.term()


def render(reply: StatusReply) -> str:
    """The reply as an aligned plain-text table, one line per node."""
    rows = [HEADERS] + [_cells(row, reply.role) for row in reply.nodes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    if "queued" in reply.info:  # a coordinator's or gossip peer's admission queue
        lines.append(_queue_line(reply.info))
    alive = sum(1 for row in reply.nodes if row.get("alive", True))
    lines.append(f"{len(reply.nodes)} node(s), {alive} alive (as seen by the {reply.role})")
    if reply.role == "coordinator" and reply.info.get("role", "standalone") != "standalone":
        info = reply.info
        lines.append(f"failover: {info.get('name')} is the {info.get('role')}, {info.get('state')} in epoch "
                     f"{info.get('epoch')}; peer {info.get('peer')} {info.get('peer_state') or 'never heard'}"
                     f" (heard {info.get('peer_heard_s_ago')} s ago)")
    return "\n".join(line.rstrip() for line in lines)


def _queue_line(info: dict[str, Any]) -> str:
    by_model = info.get("queue_by_model") or {}
    waiting = ", ".join(f"{m} {n}" for m, n in sorted(by_model.items()))
    return (f"queue: {info.get('queued')} waiting for capacity{f' ({waiting})' if waiting else ''}, limit "
            f"{info.get('queue_limit')} per model; {info.get('placed_from_queue', 0)} placed from it, "
            f"{info.get('overloaded', 0)} overloaded, {info.get('queue_timeouts', 0)} timed out")


def _cells(row: dict[str, Any], role: str) -> tuple[str, ...]:
    used, total = row_memory(row)
    memory = "-" if total is None else f"{(used or 0) / GIB:.1f}/{total / GIB:.1f} GiB"
    heard = row.get("last_heard_s", row.get("record_age_s"))
    return (str(row.get("node", "?")), _state(row, role), _num(row.get("queue_depth")), _num(row.get("in_flight")),
            _num(row.get("pending")), memory, "-" if heard is None else f"{float(heard):.1f} s ago",
            _models(row.get("models")))


def _state(row: dict[str, Any], role: str) -> str:
    status, alive = row.get("status"), row.get("alive")
    if isinstance(status, str):
        return status if status != "dead" else "DEAD"
    if isinstance(alive, bool):
        return "alive" if alive else "DEAD"
    return "alive" if role == "node" else "-"  # a node describing itself is alive: it answered


def row_memory(row: dict[str, Any]) -> tuple[int | None, int | None]:
    """(used, total) GPU memory bytes of a status row: a coordinator's sums or a node's GPUs."""
    if "memory_total" in row:
        return row.get("memory_used"), row["memory_total"]
    gpus = row.get("gpus")
    if isinstance(gpus, list) and gpus and all(isinstance(g, dict) for g in gpus):
        return (sum(int(g.get("memory_used", 0)) for g in gpus),
                sum(int(g.get("memory_total", 0)) for g in gpus))
    return None, None


def _models(models: Any) -> str:
    if not isinstance(models, list) or not models:
        return "-"
    parts = []
    for m in models:
        if isinstance(m, dict):
            parts.append(f"{m.get('model', '?')} {m.get('state', '?')} "
                         f"q{m.get('queue_depth', 0)} r{m.get('running', 0)}")
    return ", ".join(parts) or "-"


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


@exit_on_config_error
def status(
    coordinator: Annotated[str | None, typer.Option(
        help=f"Coordinator ROUTER address [default: {DEFAULT_COORDINATOR}].",
        envvar="SCHEDCTL_COORDINATOR_BIND")] = None,
    node: Annotated[str | None, typer.Option(help="Ask this node agent instead of the coordinator.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw reply as JSON.")] = False,
    keys: Annotated[Path | None, typer.Option("--keys", help="CURVE keys: a directory with the cluster's "
                                              "server.key and the --key pair.")] = None,
    key: Annotated[str, typer.Option("--key", help="The key pair in --keys to use.")] = "controller",
    cluster: Annotated[Path | None, typer.Option("--cluster", help="A deployment's cluster file: its "
                                                 "coordinator and [security] keys.")] = None,
) -> None:
    """Print the cluster as a coordinator (or a node agent) sees it.

    Examples:

    \b
      schedctl status
      schedctl status --coordinator tcp://10.0.0.5:5555 --timeout 5
      schedctl status --node tcp://127.0.0.1:5560 --json
      schedctl status --cluster ansible/.keys/prod/cluster.toml
      schedctl status --coordinator tcp://10.0.0.5:5555 --keys ansible/.keys/prod \\
          --key controller

    With CURVE (every deployed cluster, every local experiment run) the keys come from
    --keys, else the cluster file, else this host's [security] in /etc/schedctl/schedctl.toml;
    an unlisted key gets no answer at all.
    """
    if timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {timeout}")
    role = "node" if node else "coordinator"
    curve = operator_curve(keys, key, cluster)
    default = RemoteCluster.load(cluster).coordinator if cluster is not None else DEFAULT_COORDINATOR
    endpoint = node or coordinator or default
    reply = ask_status(endpoint, timeout, curve)
    if reply is None:
        hint = (" (or it refused our key: is it in the daemon's allowed_keys_dir?)" if curve else
                " (a cluster with CURVE answers only with keys: pass --keys DIR or --cluster FILE)")
        raise ConfigError(f"no {role} answered at {endpoint} within {timeout:g}s: is it running? "
                          f"start it with `schedctl start {role}`{hint}")
    if as_json:
        typer.echo(json.dumps({"role": reply.role, "nodes": reply.nodes, "info": reply.info}, indent=2,
                              sort_keys=True))
    elif not reply.nodes:
        typer.echo(f"the {reply.role} at {endpoint} knows no nodes yet: node agents publish their "
                   "state to its state address (--state-bind)")
    else:
        typer.echo(render(reply))
