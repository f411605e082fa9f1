"""The coordinator's links to its nodes, for witness votes and epoch notices.

One DEALER per node endpoint, made on first use and registered on the coordinator's
poller, so a vote's answers wake the decision loop like any request. Used only by a
coordinator with a peer (failover.py), and only around a takeover: never on the hot path.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from daemons.bus import encode, make_socket, parse_frame
from daemons.bus.security import CurveClient
from daemons.coordinator.failover import Failover
from daemons.core.messages import EpochNotice, WitnessQuery, WitnessVote

log = logging.getLogger("schedctl.coordinator")


class Witnesses:
    def __init__(self, ctx: zmq.Context[Any], poller: zmq.Poller, name: str,
                 curve: CurveClient | None = None) -> None:
        self._ctx, self._poller, self._name, self._curve = ctx, poller, name, curve
        self._links: dict[str, Any] = {}  # node endpoint -> DEALER
        self._names: dict[str, str] = {}  # node endpoint -> the node we asked there

    def ask(self, nodes: dict[str, str], query: WitnessQuery) -> None:
        """Ask `nodes` (name -> endpoint) to vote; their answers arrive through `drain`."""
        self._send_all(nodes, query)

    def notify(self, nodes: dict[str, str], notice: EpochNotice) -> None:
        self._send_all(nodes, notice)

    def drain(self, failover: Failover) -> None:
        """Read every waiting answer; votes go to `failover`'s open round, anything else is dropped."""
        for endpoint, link in self._links.items():
            while True:
                try:
                    frame = link.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                env = parse_frame(frame, "witness")
                if env is None:
                    continue
                if not isinstance(env.body, WitnessVote):
                    log.warning("dropped %r from %r on a witness link (expected witness_vote)", env.type, env.sender)
                elif env.body.node != self._names.get(endpoint):
                    # A vote counts for the node at the endpoint we asked, never for a name it claims.
                    log.warning("dropped a witness vote from %s claiming to be %r", endpoint, env.body.node[:64])
                else:
                    failover.voted(env.body.node, env.body.granted, env.body.epoch)

    def close(self) -> None:
        for link in self._links.values():
            link.close(0)
        self._links.clear()

    def _send_all(self, nodes: dict[str, str], body: Any) -> None:
        frame = encode(body, self._name)
        for node, endpoint in nodes.items():
            self._names[endpoint] = node
            try:
                self._link(endpoint).send(frame, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # a full queue to a dead node: its vote is simply missing
                log.warning("could not send %s to %s: %s", body.TYPE, node, exc.strerror)

    def _link(self, endpoint: str) -> Any:
        link = self._links.get(endpoint)
        if link is None:
            link = make_socket(self._ctx, zmq.DEALER, curve=self._curve)
            link.connect(endpoint)
            self._poller.register(link, zmq.POLLIN)
            self._links[endpoint] = link
        return link
