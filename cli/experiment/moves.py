"""The `migrate` fault: order a node to live-migrate one of its running requests.

`AT:migrate:node-K` sends node-K a `Migrate` naming the next node of the cluster (node
order, wrapping around) as the destination and no request: node-K moves its shortest
running request worth moving (daemons/node/migration.py `pick`), or, with none, logs why
and keeps serving. Sent straight to the node with the operator's key, so it works the same
in both arms (gossip mode has no coordinator) and on a deployed cluster. Not a failure:
events.csv records it as `migrate_ordered`, and the node's own `migrated` event follows
when the move completes.
"""

from __future__ import annotations

from daemons.bus.client import Client
from daemons.bus.security import CurveClient
from daemons.core.errors import SchedctlError
from daemons.core.messages import Migrate
from daemons.node.migration import fault_destination


def order_migration(node_endpoints: dict[str, str], source: str, curve: CurveClient | None) -> str:
    """Send `source` its order; returns the destination's name."""
    names = list(node_endpoints)
    destination = fault_destination(names, source)
    if not destination:
        raise SchedctlError(f"cannot migrate off {source!r}: it needs to be one of two or more nodes ({names})")
    with Client(node_endpoints[source], name="fault-injector", curve=curve) as client:
        client.send(Migrate("", source, destination, node_endpoints[destination], "migrate fault"))
        try:  # answered after the order on the same connection: the order has arrived
            client.status(5.0)
        except TimeoutError:
            raise SchedctlError(f"{source} did not answer: its migration order may be lost") from None
    return destination
