"""The coordinator's DEALER links to node agents, one per endpoint, made on first use.

The mover (live-migration orders) and the pre-warmer (pre-warm orders) both send orders
straight to a node's ROUTER; each keeps one of these.
"""

from __future__ import annotations

from typing import Any

import zmq

from daemons.bus import make_socket
from daemons.bus.security import CurveClient


class Links:
    def __init__(self, ctx: zmq.Context[Any], curve: CurveClient | None = None) -> None:
        self._ctx, self._curve = ctx, curve
        self._by_endpoint: dict[str, Any] = {}  # node endpoint -> DEALER

    def get(self, endpoint: str) -> Any:
        """The DEALER connected to `endpoint` (connected now if it is the first order there)."""
        link = self._by_endpoint.get(endpoint)
        if link is None:
            link = make_socket(self._ctx, zmq.DEALER, curve=self._curve)
            link.connect(endpoint)
            self._by_endpoint[endpoint] = link
        return link

    def close(self) -> None:
        for link in self._by_endpoint.values():
            link.close(0)
        self._by_endpoint.clear()
