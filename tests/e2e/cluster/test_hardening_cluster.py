"""Issue #11, cluster part: the Redis bus and store take hostile bytes without dying or losing the
legitimate traffic next to them, bound what they hold, and Redis can require a password (never in
argv or logs) and TLS. Everything runs against a real redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import secrets
import time
from pathlib import Path

import msgpack
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from signalling import config
from signalling.cluster.bus import MAX_MESSAGE_BYTES, RedisBus, RemoteError
from signalling.cluster.placement import Placer, room_key
from signalling.cluster.redisconn import RedisTarget, target_from_settings
from signalling.cluster.registry import Registry
from signalling.cluster.replica import BusCollector
from signalling.cluster.store import RedisStore
from signalling.run.nodeagent import NodeAgent
from tests.support.clusterfix import Cluster, Proc
from tests.support.redisproc import RedisProc


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Endpoints:
    """Buses and stores on one key prefix of a redis-server, plus a raw client to inject bytes."""

    def __init__(self, target: str | RedisTarget) -> None:
        self.target = target
        self.prefix = f"h{secrets.token_hex(4)}:"
        self.made: list = []
        self.raw = (target if isinstance(target, RedisTarget) else RedisTarget(target)).client()

    async def bus(self, inbox: str | None = None, **limits: int) -> RedisBus:
        b = RedisBus(self.target, inbox, prefix=self.prefix, **limits)
        await b.start()
        self.made.append(b)
        return b

    async def store(self) -> RedisStore:
        s = RedisStore(self.target, prefix=self.prefix)
        await s.start()
        self.made.append(s)
        return s

    async def inject(self, channel: str, *payloads: bytes) -> None:
        """Publish raw bytes straight into Redis, in one pipeline (they arrive back to back)."""
        pipe = self.raw.pipeline(transaction=False)
        for data in payloads:
            pipe.publish(self.prefix + channel, data)
        await pipe.execute()

    async def close(self) -> None:
        for x in self.made:
            await x.close()
        await self.raw.aclose()


@pytest.fixture
async def ends(redis_proc):
    e = Endpoints(redis_proc.url)
    try:
        yield e
    finally:
        await e.close()


def read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


# Bytes a hostile or buggy writer could put on any channel; none may end the reader or be acted on.
MALFORMED = [
    pack({"k": "rep", "r": []}),                                # unhashable request id (killed the reader)
    pack({"k": "rep", "r": {"a": 1}, "ok": True}),
    pack({"k": "rep", "r": "x", "ok": "yes"}),
    pack({"k": "rep", "r": "x", "ok": False, "code": ["c"], "message": 3}),
    pack({"k": "req", "r": "x", "to": 123, "b": {}}),           # non-string reply channel
    pack({"k": "req", "r": "x", "to": "a b", "b": {}}),
    pack({"k": "req", "r": 7, "to": "inbox:x", "b": {}}),
    pack({"k": "zzz"}),
    pack([1, 2, 3]),
    pack("just a string"),
    b"\xc1",                                                    # never-used msgpack byte
    b"\x92\x01",                                                # truncated
    b"\x91" * 5000,                                             # nested deeper than msgpack's stack
    pack({1: 2}),                                               # non-string map key
    b"\xda\xff\xff" + b"a" * 10,                                # string claiming 64 KiB
    pack({"k": "msg", "b": "x" * (MAX_MESSAGE_BYTES + 1)}),     # over the size limit
]


def metric_value(registry: CollectorRegistry, name: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


async def test_malformed_replies_and_messages_are_counted_drops_and_the_reader_lives_on(ends):
    node, replica = await ends.bus("node:n1"), await ends.bus("replica:r1")
    events = []
    await replica.subscribe(replica.inbox, events.append)

    async def respond(body):
        return {"echo": body}

    await node.serve("node:n1", respond)
    store = await ends.store()
    registry = CollectorRegistry()
    registry.register(BusCollector(replica, store, "r1"))

    for bad in MALFORMED:
        # each bad message sits between two legitimate ones on the replica's channel
        await ends.inject(replica.inbox, pack({"k": "msg", "b": {"before": bad[:8]}}), bad,
                          pack({"k": "msg", "b": {"after": bad[:8]}}))
    await until(lambda: len(events) == 2 * len(MALFORMED))
    assert events[0::2] == [{"before": bad[:8]} for bad in MALFORMED]
    assert events[1::2] == [{"after": bad[:8]} for bad in MALFORMED]
    assert replica.stats["malformed"] == len(MALFORMED)
    assert metric_value(registry, "basement_bus_malformed_total") == len(MALFORMED)
    # the reader is alive: a request still gets its reply through the same inbox
    assert await replica.request("node:n1", {"q": 1}, timeout=10) == {"echo": {"q": 1}}


async def test_a_request_with_a_bad_reply_channel_is_refused_and_loses_no_other_reply(ends):
    node, client = await ends.bus("node:n1"), await ends.bus("replica:c1")
    bodies = []

    async def respond(body):
        bodies.append(body)
        return body["n"]

    await node.serve("node:n1", respond)
    pending = [asyncio.ensure_future(client.request("node:n1", {"n": i}, timeout=10)) for i in range(3)]
    bad = [pack({"k": "req", "r": f"bad{i}", "to": to, "b": {"n": "bad"}})
           for i, to in enumerate([123, ["replica:c1"], None, "", "x" * 1000, {"c": 1}])]
    await ends.inject("node:n1", *bad)
    pending += [asyncio.ensure_future(client.request("node:n1", {"n": i}, timeout=10)) for i in range(3, 6)]
    assert await asyncio.gather(*pending) == list(range(6))
    # refused at the boundary: the node never worked on them, nothing was sent that could fail a batch
    assert {"n": "bad"} not in bodies
    assert node.stats["malformed"] == len(bad) and node.stats["dropped"] == 0


async def test_bad_node_requests_get_a_precise_error_not_internal(ends):
    bus, client = await ends.bus("inbox:n1"), await ends.bus("replica:r1")
    store = await ends.store()
    agent = NodeAgent("n1", bus, Placer(store, Registry(store, "node")), Registry(store, "node"),
                      Registry(store, "replica"))
    await agent.start()
    try:
        for body, code in [({"op": "join", "args": {"room": [], "pid": "p"}}, "bad_request"),
                           ({"op": "leave", "args": {"pid": 5}}, "bad_request"),
                           ({"op": "mute", "args": ["pid"]}, "bad_request"),
                           ({"op": {"x": 1}}, "unknown_op"),
                           ("a string", "bad_request")]:
            with pytest.raises(RemoteError) as e:
                await client.request("node:n1", body, timeout=10)
            assert e.value.code == code, body
        # one-way requests (no reply) with bad shapes are counted drops
        client.publish("node:n1", {"op": "leave", "args": {"pid": None}})
        await until(lambda: bus.stats["malformed"] == 1)
    finally:
        await agent.stop()


async def test_the_replica_drops_malformed_node_events(ends):
    from signalling.cluster.remote import RemoteNode

    bus = await ends.bus("replica:r1")
    store = await ends.store()
    got = []
    remote = RemoteNode("r1", bus, Placer(store, Registry(store, "node")), lambda pid, msg: got.append((pid, msg)))
    await remote.start()
    await ends.inject("replica:r1", pack({"k": "msg", "b": {"op": "deliver", "pid": ["p"], "msg": {}}}),
                      pack({"k": "msg", "b": "deliver"}),
                      pack({"k": "msg", "b": {"op": "deliver", "pid": "p1", "msg": {"type": "x"}}}))
    await until(lambda: got)
    assert got == [("p1", {"type": "x"})]
    assert bus.stats["malformed"] == 2


async def test_the_send_queue_is_bounded_and_overflow_is_counted(ends):
    sender, receiver = await ends.bus("inbox:s", max_queued=50), await ends.bus("inbox:r")
    got = []
    await receiver.subscribe(receiver.inbox, got.append)
    # no await in between: the sender task cannot drain, so the queue fills (as while Redis is away)
    sent = [sender.publish(receiver.inbox, {"i": i}) for i in range(80)]
    assert sent == [True] * 50 + [False] * 30
    assert sender.stats["dropped"] == 30
    with pytest.raises(RemoteError) as e:
        await sender.request(receiver.inbox, {"q": 1})
    assert e.value.code == "overloaded"
    await sender.flush()
    await until(lambda: len(got) == 50)
    assert [m["i"] for m in got] == list(range(50))
    assert sender.publish(receiver.inbox, {"i": "later"}) is True  # room again once drained


async def test_concurrent_requests_beyond_the_limit_are_answered_overloaded(ends):
    node, client = await ends.bus("node:n1", max_inflight=3), await ends.bus("replica:c1")
    release = asyncio.Event()
    started = []

    async def respond(body):
        started.append(body)
        await release.wait()
        return body

    await node.serve("node:n1", respond)
    held = [asyncio.ensure_future(client.request("node:n1", i, timeout=30)) for i in range(3)]
    await until(lambda: len(started) == 3)
    for i in range(3, 6):
        with pytest.raises(RemoteError) as e:
            await client.request("node:n1", i, timeout=30)
        assert e.value.code == "overloaded"
    assert node.stats["dropped"] == 3
    release.set()
    assert await asyncio.gather(*held) == [0, 1, 2]
    assert await client.request("node:n1", 9, timeout=30) == 9


async def test_foreign_bytes_in_the_store_are_ignored_and_placement_still_works(ends):
    store = await ends.store()
    nodes = Registry(store, "node")
    await nodes.beat({"id": "good", "address": "x", "capacity": 0, "draining": False, "cpu": 1.0, "rooms": 0,
                      "participants": 0, "tracks": 0})
    raw = ends.raw
    await raw.hset(ends.prefix + "nodes", mapping={"junk": pack(1), "forged": pack(1), "bytes": pack(1)})
    await raw.set(ends.prefix + "node:junk", b"\xc1\xc1", px=5000)
    await raw.set(ends.prefix + "node:forged", pack({"id": "forged", "cpu": "lots", "rooms": []}), px=5000)
    await raw.set(ends.prefix + "node:bytes", pack({"id": "someone-else"}), px=5000)
    await raw.set(ends.prefix + room_key("r1"), pack([1, 2]))
    await raw.set(ends.prefix + room_key("r2"), b"\xc1")
    assert set(await nodes.live()) == {"good"}
    placer = Placer(store, nodes)
    assert await placer.node_for("r1") == "good"
    assert await store.get(room_key("r1")) == "good"
    assert await store.get(room_key("r2")) is None
    assert store.stats["malformed"] >= 2


PASSWORD = "pw-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def redis_auth():
    r = RedisProc(password=PASSWORD).start()
    try:
        yield r
    finally:
        r.stop()


async def test_bus_and_store_work_with_the_password_and_are_refused_without(redis_auth):
    target = RedisTarget(redis_auth.url, password=PASSWORD)
    e = Endpoints(target)
    try:
        node, client = await e.bus("node:n1"), await e.bus("replica:c1")

        async def respond(body):
            return body * 2

        await node.serve("node:n1", respond)
        assert await client.request("node:n1", 21, timeout=10) == 42
        store = await e.store()
        await store.set("k", {"v": 1})
        assert await store.get("k") == {"v": 1}
    finally:
        await e.close()
    for wrong in (RedisTarget(redis_auth.url), RedisTarget(redis_auth.url, password="not-it")):
        with pytest.raises(AuthenticationError):
            await RedisStore(wrong).start()
        bus = RedisBus(wrong)
        with pytest.raises(AuthenticationError):
            await bus.start()
    assert PASSWORD not in repr(target) and PASSWORD not in redis_auth.proc.args


async def test_cluster_processes_use_the_password_and_never_show_it(redis_auth, tmp_path):
    pw_file = tmp_path / "redis-password"
    pw_file.write_text(PASSWORD)
    cluster = Cluster(redis_auth)
    try:
        # SFU by env, replica by file: both ways a Secret reaches a pod
        node = Proc("sfu", "sfu0", redis_auth.url, cluster.logdir, BASEMENT_REDIS_PASSWORD=PASSWORD)
        replica = Proc("signal", "sig0", redis_auth.url, cluster.logdir, BASEMENT_GRANT_SECRET=cluster.grant_secret,
                       BASEMENT_REDIS_PASSWORD_FILE=str(pw_file))
        cluster.nodes, cluster.replicas = [node], [replica]
        await asyncio.gather(node.wait_ready(), replica.wait_ready())
        deadline = time.monotonic() + 20
        while await replica.metric("basement_cluster_live_nodes") != 1:
            assert time.monotonic() < deadline, cluster.logs()
            await asyncio.sleep(0.2)
        for p in (node, replica):
            assert PASSWORD.encode() not in read_bytes(f"/proc/{p.proc.pid}/cmdline")
        # the real node process survives a malformed request on its channel and counts it
        raw = RedisTarget(redis_auth.url, password=PASSWORD).client()
        await raw.publish("basement:node:sfu0", pack({"k": "rep", "r": []}))
        await raw.publish("basement:node:sfu0", pack({"k": "req", "r": "x", "to": 5, "b": {"op": "leave"}}))
        await raw.aclose()
        while await node.metric("basement_bus_malformed_total") != 2:
            assert time.monotonic() < deadline, cluster.logs()
            await asyncio.sleep(0.2)
        assert (await node.get("/readyz"))[0] == 200
        # no password, and a wrong one inside the URL: a clear error naming the setting, exit 2, URL redacted
        nopw = Proc("signal", "nopw", redis_auth.url, cluster.logdir, BASEMENT_GRANT_SECRET="g" * 64)
        wrong = Proc("sfu", "wrong", redis_auth.url.replace("//", "//:wrong-secret-9@"), cluster.logdir)
        cluster.replicas.append(nopw)
        cluster.nodes.append(wrong)
        assert await nopw.wait_exit(30) == 2
        assert await wrong.wait_exit(30) == 2
        assert "redis_password: Redis at redis://127.0.0.1" in nopw.tail()
        assert "refused authentication" in nopw.tail() and "BASEMENT_REDIS_PASSWORD" in nopw.tail()
        assert "redis://:***@127.0.0.1" in wrong.tail()
        for p in cluster.nodes + cluster.replicas:
            log = read_bytes(p.log_path).decode(errors="replace")
            assert PASSWORD not in log and "wrong-secret-9" not in log, p.id
    finally:
        cluster.stop()


def _tls_files(where: Path) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, issuer, key, signer, ca: bool, san=None):
        usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                               "encipher_only", "decipher_only"), False)
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
                            critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                            critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "basement test CA")])
    ca = cert(ca_name, ca_name, ca_key, ca_key, True)
    server = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key, ca_key, False,
                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    paths = where / "server.crt", where / "server.key", where / "ca.crt"
    paths[0].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(paths[1], 0o600)
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return tuple(str(p) for p in paths)


async def test_bus_and_store_over_tls_verify_the_server_with_the_configured_ca(tmp_path):
    cert, key, ca = _tls_files(tmp_path)
    r = RedisProc(password=PASSWORD, tls=(cert, key, ca)).start()
    try:
        assert r.url.startswith("rediss://")
        settings = config.load(env={"BASEMENT_REDIS_URL": r.url, "BASEMENT_REDIS_PASSWORD": PASSWORD,
                                    "BASEMENT_REDIS_SSL_CA_CERTS": ca})
        e = Endpoints(target_from_settings(settings))
        try:
            node, client = await e.bus("node:n1"), await e.bus("replica:c1")

            async def respond(body):
                return body + 1

            await node.serve("node:n1", respond)
            assert await client.request("node:n1", 1, timeout=10) == 2
        finally:
            await e.close()
        # without our CA the server's certificate does not verify; plain redis:// gets no answer it can use
        unverified = RedisStore(RedisTarget(r.url, password=PASSWORD))
        with pytest.raises(RedisConnectionError, match="(?i)certificate"):
            await unverified.start()
        plain = aioredis.Redis(port=r.port, password=PASSWORD, socket_timeout=2)
        with pytest.raises(RedisConnectionError):
            await plain.ping()
        await plain.aclose()
    finally:
        r.stop()
