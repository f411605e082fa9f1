"""Every daemon's /metrics, scraped over HTTP from real processes during a short run: it
passes `promtool check metrics`, and its values move as the run says they should."""

from __future__ import annotations

import contextlib
from pathlib import Path

from daemons.bus.metrics import serve
from daemons.coordinator.testing import Client, running_coordinator
from daemons.gossip.testing import free_ports, peer_cluster
from daemons.loadgen import LoadgenConfig, PlannedRequest, run
from daemons.loadgen.metrics import LoadgenMetrics
from daemons.node.testing import running_node, wait_until
from tests.metrics.scrape import loopback_bind, needs_promtool, promtool_check, samples, scrape, value
from tests.metrics.test_dashboard import every_exported_name

SMALL = "facebook/opt-125m"
REQUESTS = 6


@needs_promtool
def test_coordinator_node_and_loadgen_count_the_same_run(tmp_path: Path) -> None:
    coord_bind, node_bind, loadgen_bind = loopback_bind(), loopback_bind(), loopback_bind()
    with running_coordinator(tmp_path, dead_after=3.0, metrics_bind=coord_bind) as coord, \
            running_node(tmp_path, models=[SMALL], checkpoint_tier="gpu", publish_to=[coord.state_bind],
                         metrics_bind=node_bind), \
            Client(coord.bind) as client:
        client.wait_for_nodes({"node-0"}, timeout_s=20)
        before = scrape(coord_bind)
        assert value(before, "schedctl_coordinator_nodes", state="alive") == 1
        assert value(before, "schedctl_coordinator_node_states_received_total") >= 1
        metrics = LoadgenMetrics()
        endpoint = serve(metrics.registry, loadgen_bind)
        try:
            schedule = [PlannedRequest(f"m{i}", 0.2 * i, SMALL, 8, 4) for i in range(REQUESTS)]
            results = run(LoadgenConfig(coordinator=coord.bind, timeout_s=60), schedule, metrics=metrics)
            loadgen = scrape(loadgen_bind)
        finally:
            endpoint.close()
        ok = [r for r in results.records if r.status == "ok"]
        assert len(ok) == REQUESTS, [(r.request_id, r.status, r.error) for r in results.records]
        placed = sum(1 for r in results.records if r.placed_action)  # placements, as requests.csv has them
        coord_text, node_text = scrape(coord_bind), scrape(node_bind)
        for text in (coord_text, node_text, loadgen):
            promtool_check(text)
            # what the dashboard test takes for exported is what the processes really export
            assert {name for name, _ in samples(text)} <= every_exported_name()

    decisions = sum(value(coord_text, "schedctl_coordinator_decisions_total", action=a, policy="affinity-score")
                    for a in ("SERVE", "COLD_START", "MIGRATE"))
    assert decisions == placed == REQUESTS
    assert value(coord_text, "schedctl_coordinator_decision_seconds_count") == REQUESTS
    assert value(coord_text, "schedctl_coordinator_refusals_total", code="unknown_model") == 0
    assert value(coord_text, "schedctl_coordinator_role", role="standalone", state="active") == 1

    assert value(node_text, "schedctl_node_requests_total", outcome="ok") == REQUESTS
    assert value(node_text, "schedctl_node_model_loads_total", outcome="ok") == 1
    assert value(node_text, "schedctl_node_model_load_seconds_count") == 1
    assert value(node_text, "schedctl_node_gpu_memory_used_bytes", gpu="0") > 0
    assert value(node_text, "schedctl_node_gpu_memory_total_bytes", gpu="0") > 0
    assert value(node_text, "schedctl_node_instances", state="ready") == 1
    assert value(node_text, "schedctl_node_info", gpu_backend="emulated", scheduler="centralized") == 1

    assert value(loadgen, "schedctl_loadgen_sent_requests_total") == REQUESTS
    assert value(loadgen, "schedctl_loadgen_outcomes_total", outcome="ok") == REQUESTS
    assert value(loadgen, "schedctl_loadgen_ttft_seconds_count") == REQUESTS
    assert value(loadgen, "schedctl_loadgen_tpot_seconds_count") == REQUESTS  # 4 tokens each
    assert value(loadgen, "schedctl_loadgen_send_lag_seconds_count") == REQUESTS
    assert value(loadgen, "schedctl_loadgen_in_flight") == 0
    ttft_sum = sum(r.ttft_s or 0.0 for r in ok)
    assert abs(value(loadgen, "schedctl_loadgen_ttft_seconds_sum") - ttft_sum) < 1e-6


@needs_promtool
def test_gossip_peers_count_members_and_traffic() -> None:
    ports = free_ports(2)
    binds = [loopback_bind() for _ in ports]
    with peer_cluster() as cluster:
        seed = f"tcp://127.0.0.1:{ports[0]}"
        for i, port in enumerate(ports):
            cluster.spawn(f"p{i}", port, [] if i == 0 else [seed], "ci", ["--metrics-bind", binds[i]])
        assert cluster.wait_for(lambda: all(cluster.alive_view(f"p{i}") == {f"p{1 - i}"} for i in range(2)), 20)
        texts: list[str] = []

        def probed() -> bool:
            texts[:] = [scrape(b) for b in binds]
            return all(value(t, "schedctl_gossip_probe_rtt_seconds_count") >= 1 for t in texts)

        wait_until("both peers probed each other", probed, 20)
    for text in texts:
        promtool_check(text)
        assert value(text, "schedctl_gossip_members", state="alive") == 2
        assert value(text, "schedctl_gossip_members", state="dead") == 0
        assert value(text, "schedctl_gossip_messages_sent_total") > 0
        assert value(text, "schedctl_gossip_received_bytes_total") > 0
        assert value(text, "schedctl_gossip_probes_total") >= 1
        assert 0 < value(text, "schedctl_gossip_probe_rtt_seconds_sum") < 5


@needs_promtool
def test_a_gossip_node_exports_its_peer_metrics_too(tmp_path: Path) -> None:
    from daemons.coordinator.testing import free_endpoint

    bind = loopback_bind()
    with running_node(tmp_path, "node-0", scheduler="gossip", gossip_bind=free_endpoint(), gossip_preset="ci",
                      models=[SMALL], metrics_bind=bind):
        text = ""

        def alive() -> bool:
            nonlocal text
            with contextlib.suppress(OSError):
                text = scrape(bind)
            return (value(text, "schedctl_gossip_members", state="alive") == 1
                    and value(text, "schedctl_node_gpu_memory_total_bytes", gpu="0") > 0)

        wait_until("the node's gossip peer counts itself alive", alive, 20)
        promtool_check(text)
    assert value(text, "schedctl_node_info", gpu_backend="emulated", scheduler="gossip") == 1
