"""What each media worker of `basement serve --workers N` runs with, and how the parent merges the
workers' metrics (signalling.run.workers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from signalling import config
from signalling.config import Settings
from signalling.run.workers import WorkerMetrics, worker_settings


def test_each_worker_gets_its_own_ports_and_no_secret():
    s = config.load(env={"BASEMENT_WORKERS": "3", "BASEMENT_ICE_UDP_PORT": "7882", "BASEMENT_ICE_TCP_PORT": "7881",
                         "BASEMENT_GRANT_SECRET": "g" * 64, "BASEMENT_ADMIN_KEY": "k" * 32,
                         "BASEMENT_TURN_URLS": "turn:turn.example:3478", "BASEMENT_TURN_SECRET": "t" * 32,
                         "BASEMENT_SPEAKER_INTERVAL_MS": "700", "BASEMENT_PRESENCE_BATCH_ABOVE": "7"})
    values = [worker_settings(s, i, 3, f"worker-{i}") for i in range(3)]
    assert [(v["ice_udp_port"], v["ice_tcp_port"], v["node_id"]) for v in values] == [
        (7882, 7881, "worker-0"), (7883, 7882, "worker-1"), (7884, 7883, "worker-2")]
    for v in values:
        worker = Settings(**v).validate()  # what the worker does with them
        assert (worker.port, worker.metrics_port, worker.worker_count) == (0, 0, 1)
        assert (worker.speaker_interval_ms, worker.presence_batch_above) == (700, 7)
        # the worker needs no secret, so none crosses to it (nor anything that needs one, like TURN)
        assert not worker.grant_secret and not worker.admin_key and not worker.turn_secret
        assert not worker.turn_urls
        assert "g" * 64 not in repr(v) and "t" * 32 not in repr(v)


def test_workers_share_a_port_range_in_disjoint_slices():
    s = config.load(env={"BASEMENT_WORKERS": "2", "BASEMENT_RTP_PORT_MIN": "50000", "BASEMENT_RTP_PORT_MAX": "50999"})
    values = [worker_settings(s, i, 2, f"worker-{i}") for i in range(2)]
    slices = [(v["rtp_port_min"], v["rtp_port_max"]) for v in values]
    assert slices == [(50000, 50499), (50500, 50999)]


def _exposition(worker: str, packets: int, rooms: int) -> bytes:
    registry = CollectorRegistry()
    Counter("basement_packets_out", "RTP packets forwarded", ["worker"], registry=registry).labels(worker).inc(packets)
    Gauge("basement_rooms", "current number of rooms", ["worker"], registry=registry).labels(worker).set(rooms)
    return generate_latest(registry)


def test_the_workers_metrics_merge_into_one_family_per_name():
    merged = WorkerMetrics(pool=None)  # type: ignore[arg-type]
    merged.texts = {0: _exposition("0", 10, 1), 1: _exposition("1", 32, 2)}
    registry = CollectorRegistry()
    registry.register(merged)
    text = generate_latest(registry).decode()
    # what one worker's own exposition says, for both, once per name (as Prometheus requires)
    assert text.count("# TYPE basement_packets_out_total counter") == 1
    assert text.count("# TYPE basement_rooms gauge") == 1
    families = text_string_to_metric_families(text)
    values = {(s.name, s.labels.get("worker")): s.value for f in families for s in f.samples}
    assert values[("basement_packets_out_total", "0")] == 10 and values[("basement_packets_out_total", "1")] == 32
    assert values[("basement_rooms", "0")] == 1 and values[("basement_rooms", "1")] == 2


def test_a_cluster_worker_gets_the_nodes_settings_its_redis_password_and_a_share_of_the_capacity():
    s = config.load(env={"BASEMENT_WORKERS": "2", "BASEMENT_REDIS_URL": "redis://10.0.0.5:6379/0",
                         "BASEMENT_REDIS_PASSWORD": "p" * 24, "BASEMENT_NODE_CAPACITY": "300",
                         "BASEMENT_DRAIN_TIMEOUT_S": "120"}, groups=config.SUBCOMMAND_GROUPS["sfu"])
    v = worker_settings(s, 1, 2, "sfu-a-w1", config.SUBCOMMAND_GROUPS["sfu"], with_secrets=True)
    worker = Settings(**v).validate()
    assert (worker.node_id, worker.redis_url, worker.redis_password) == ("sfu-a-w1", s.redis_url, "p" * 24)
    assert (worker.node_capacity, worker.drain_timeout_s, worker.port, worker.metrics_port) == (150, 120, 0, 0)


def test_every_worker_of_many_accepts_its_own_slice_of_the_ports():
    """A worker is one media process: its own settings must not re-check the parent's worker count
    against its slice (8 workers on 100 ports once failed in all 8; the last of 4 on 65530-65533 too)."""
    sfu = config.SUBCOMMAND_GROUPS["sfu"]
    for env, count in (({"BASEMENT_RTP_PORT_MIN": "10000", "BASEMENT_RTP_PORT_MAX": "10099"}, 8),
                       ({"BASEMENT_ICE_UDP_PORT": "65530"}, 4)):
        s = config.load(env={**env, "BASEMENT_WORKERS": str(count)}, groups=sfu)
        for i in range(count):
            worker = Settings(**worker_settings(s, i, count, f"n-w{i}", sfu, with_secrets=True)).validate()
            assert worker.worker_count == 1
