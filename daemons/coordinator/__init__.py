"""The centralized scheduler: cluster view, failure detector, decision server.

    from daemons.coordinator import Coordinator, CoordinatorConfig, run
    run(CoordinatorConfig.load(None, {"policy": "startup-optimal"}))   # blocks until SIGTERM
"""

from daemons.coordinator.cluster import ClusterBook, NodeRecord
from daemons.coordinator.config import CoordinatorConfig
from daemons.coordinator.server import Coordinator, run

__all__ = ["ClusterBook", "Coordinator", "CoordinatorConfig", "NodeRecord", "run"]
