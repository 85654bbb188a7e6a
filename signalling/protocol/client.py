"""A Python client for Basement, on aiortc, speaking only the documented protocol (docs/protocol.md).

Used by the tests, the load generator and bots:

    client = Client("http://127.0.0.1:8080")
    await client.connect()
    await client.join("demo", "bot")
    await client.publish(audio=AudioTrack(), video=VideoTrack())
    track = await client.wait_track(kind="video")   # (info, aiortc MediaStreamTrack)
    await client.close()
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl as ssl_
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from signalling import safejson
from signalling.e2ee.frames import E2eeError, decrypt_receiver, encrypt_sender
from signalling.e2ee.keys import KeyProvider, Outgoing

log = logging.getLogger("basement.client")

MAX_SERVER_MESSAGE_BYTES = 4 * 1024 * 1024  # aiohttp's default frame limit; subscriber offers can be long
MAX_UNACKNOWLEDGED = 256  # messages kept for re-sending after a resume (a ping's pong frees them)
PING_INTERVAL_S = 10.0
RESUME_RETRY_S = 0.25
RESUME_REPLY_TIMEOUT_S = 5.0


class ServerError(Exception):
    def __init__(self, msg: dict[str, Any]) -> None:
        super().__init__(f"{msg.get('code')}: {msg.get('message')}")
        self.code = msg.get("code")
        self.message = msg.get("message")


def _quiet_connect(pc: RTCPeerConnection) -> None:
    """aiortc connects in a fire-and-forget task after each set*Description; when the connection is
    closed while it runs (leaving during a renegotiation) it raises InvalidStateError and asyncio
    logs "Task exception was never retrieved". Expected then, so dropped (sfu.transport does the same)."""
    connect = pc._RTCPeerConnection__connect  # type: ignore[attr-defined]

    async def guarded() -> None:
        try:
            await connect()
        except InvalidStateError:
            if pc.signalingState != "closed" and pc.connectionState not in ("failed", "closed"):
                raise

    pc._RTCPeerConnection__connect = guarded  # type: ignore[attr-defined]


def _new_pc(ice_servers: list[dict[str, Any]] | None = None) -> RTCPeerConnection:
    # only the servers `joined` names (STUN/TURN with this participant's credentials), as in the web
    # client: aiortc's default would query Google's STUN server from every connection
    servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
               for s in ice_servers or [] if isinstance(s, dict) and s.get("urls")]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    _quiet_connect(pc)
    return pc


class Client:
    def __init__(self, url: str, video_codec: str = "VP8", ssl: ssl_.SSLContext | bool = True,
                 resume: bool = True, e2ee: KeyProvider | None = None) -> None:
        """`ssl`: for an https:// server, the context to verify it with (e.g. one trusting a
        self-signed certificate's file), True for the system's CAs, False to skip verification.
        `resume`: when the WebSocket drops (no close frame), reconnect and resume the participant
        (docs/protocol.md "Reconnecting"), resending what the server had not read.
        `e2ee`: where the keys come from to encrypt what this client publishes and decrypt what it
        receives end to end (signalling.e2ee.keys: PassphraseKeys, WalletKeys; docs/e2ee.md);
        without them, encrypted tracks arrive and do not decode. With WalletKeys the keys travel
        over the data channels: publish (at least `data=True`) to take part."""
        self.ssl = ssl
        self.e2ee = e2ee
        # track id -> its received frames dropped because they did not decrypt (e2ee)
        self.undecryptable: Counter[str] = Counter()
        self._e2ee_outbox: list[Outgoing] = []  # e2ee messages waiting for the data channel
        self._e2ee_timer: asyncio.Task | None = None
        self.room: str | None = None
        self.resume = resume
        base = url.rstrip("/")
        self.ws_url = base.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        self.video_codec = video_codec
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.participant: dict[str, Any] | None = None
        # the others in the room, by id: from `joined`, then participant_joined / _left and presence
        self.participants: dict[str, dict[str, Any]] = {}
        self.ice_servers: list[dict[str, Any]] = []  # STUN/TURN from `joined`, for both connections
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self.messages: list[dict[str, Any]] = []
        self.remote: dict[str, tuple[dict[str, Any], MediaStreamTrack]] = {}  # track id -> (info, track)
        self.on_track: Callable[[dict[str, Any], MediaStreamTrack], None] | None = None
        self.on_offer_applied: Callable[[RTCPeerConnection], None] | None = None
        self.published: dict[str, str] = {}  # "audio" / "video" / "screen" -> track id on the server
        self._sources: dict[str, str] = {}  # mid -> source, sent with every publish offer
        # data channels on the publish connection ("reliable", "lossy"), and every message they
        # brought (data, data_lost, error), in arrival order
        self.channels: dict[str, RTCDataChannel] = {}
        self.data: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._waiters: dict[Any, asyncio.Future] = {}
        self._changed = asyncio.Event()
        self._reader: asyncio.Task | None = None
        self._sub_lock = asyncio.Lock()
        self._closed = False
        # resumption: the last message number read, messages sent since the join (numbered from 0)
        # that the server may not have read yet, and how to come back
        self._n = 0
        self._sent = 0
        self._unacknowledged: deque[tuple[int, str]] = deque()
        self._resume: dict[str, Any] | None = None  # {"token", "grace_s"} from joined / resumed
        self._resuming: asyncio.Task | None = None
        self._pinger: asyncio.Task | None = None
        self.ping_interval_s = PING_INTERVAL_S  # or what `joined.ping` says
        self._ended = False  # left or removed: nothing to resume
        self.resumes = 0  # sockets resumed
        self.resyncs = 0  # of which through another replica after ours died (`resumed.resync`)
        self._asked_before_drop: set[Any] = set()
        self.resume_error: Exception | None = None  # why the last resume failed (the participant is gone)

    # --- connection ---------------------------------------------------------------------------
    async def connect(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.ws_url, heartbeat=20, ssl=self.ssl)
        self._reader = asyncio.ensure_future(self._read(self.ws))

    async def send(self, msg: dict[str, Any]) -> None:
        assert self.ws is not None, "connect() first"
        text = json.dumps(msg)
        if self.resume and self._resume is not None and msg.get("type") not in ("join", "resume"):
            # the server counts what it reads after the join; `resumed` says how many, and the rest
            # goes again on the new socket
            self._unacknowledged.append((self._sent, text))
            self._sent += 1
            while len(self._unacknowledged) > MAX_UNACKNOWLEDGED:
                self._unacknowledged.popleft()
            if self.ws.closed or self._resuming is not None:
                return  # sent when the socket is back
        await self.ws.send_str(text)

    async def request(self, msg: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        """Send a message with an id and wait for the reply carrying the same id."""
        ref = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiters[ref] = fut
        await self.send({**msg, "id": ref})
        try:
            while True:
                try:
                    reply = await asyncio.wait_for(asyncio.shield(fut), timeout)
                    break
                except TimeoutError:
                    # the reply to a request the server read comes after a resume: wait for that
                    if self._resuming is None:
                        raise
                    await asyncio.wait({self._resuming})
        finally:
            self._waiters.pop(ref, None)
            fut.cancel()
        if reply.get("type") == "error":
            raise ServerError(reply)
        return reply

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            m = await ws.receive()
            if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                          aiohttp.WSMsgType.ERROR):
                break
            if m.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                msg = safejson.loads(m.data, max_bytes=MAX_SERVER_MESSAGE_BYTES)
            except safejson.JsonError as e:  # a server we do not control must not end the reader
                log.warning("ignoring a server message that is not JSON: %s", e)
                continue
            if not isinstance(msg, dict):
                log.warning("ignoring a server message that is not an object")
                continue
            n = msg.get("n")
            if isinstance(n, int):
                if n <= self._n:
                    continue  # (never expected: the server writes each number once on one socket)
                self._n = n
            self._track_resumption(msg)
            self._track_presence(msg)
            self.messages.append(msg)
            ref = msg.get("id")
            if ref in self._waiters and not self._waiters[ref].done():
                self._waiters[ref].set_result(msg)
            if msg.get("type") == "offer" and msg.get("target") == "subscriber":
                asyncio.ensure_future(self._on_subscriber_offer(msg))
            self._changed.set()
        self._changed.set()
        dropped = m.type != aiohttp.WSMsgType.CLOSE  # no close frame from the server
        if dropped and ws is self.ws and self.resume and self._resume is not None and not self._ended \
                and not self._closed and self._resuming is None:
            self._resuming = asyncio.ensure_future(self._come_back())

    def _track_resumption(self, msg: dict[str, Any]) -> None:
        mtype = msg.get("type")
        if mtype in ("joined", "resumed") and isinstance(msg.get("ice_servers"), list):
            self.ice_servers = msg["ice_servers"]  # (those of `resumed`: fresh TURN credentials)
        if mtype == "joined" and isinstance(msg.get("ping"), dict) \
                and isinstance(msg["ping"].get("interval_s"), int | float) and msg["ping"]["interval_s"] > 0:
            self.ping_interval_s = float(msg["ping"]["interval_s"])
        if mtype in ("joined", "resumed") and isinstance(msg.get("resume"), dict):
            self._resume = msg["resume"]
            if self._pinger is None and self.resume:
                self._pinger = asyncio.ensure_future(self._ping())
        elif mtype in ("left", "removed"):
            self._ended = True
        elif mtype == "pong" and isinstance(msg.get("received"), int):
            while self._unacknowledged and self._unacknowledged[0][0] < msg["received"]:
                self._unacknowledged.popleft()

    async def _ping(self) -> None:
        """Now and then tell the server what was read (it frees its replay) and learn what it read."""
        while not self._closed:
            await asyncio.sleep(min(self.ping_interval_s, PING_INTERVAL_S))
            if self.ws is not None and not self.ws.closed and self._resuming is None:
                try:
                    await self.send({"type": "ping", "n": self._n})
                except ConnectionError:
                    pass

    async def _come_back(self) -> None:
        """The socket dropped: open another and resume, until the server's grace period is over."""
        assert self._resume is not None and self.session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self._resume.get("grace_s", 0))
        unsent_from = self._sent  # messages from here on were not sent on any socket yet
        self._asked_before_drop = set(self._waiters)
        log.info("signalling socket dropped; resuming")
        try:
            while not self._closed:
                try:
                    ws = await self.session.ws_connect(self.ws_url, heartbeat=20, ssl=self.ssl)
                except (aiohttp.ClientError, OSError) as e:
                    if loop.time() >= deadline:
                        raise ConnectionError(f"could not reconnect within the grace period: {e}") from e
                    await asyncio.sleep(RESUME_RETRY_S)
                    continue
                try:
                    await ws.send_str(json.dumps({"type": "resume", "token": self._resume["token"], "n": self._n}))
                    first = await ws.receive(timeout=RESUME_REPLY_TIMEOUT_S)
                except (TimeoutError, aiohttp.ClientError, OSError):
                    first = None
                if first is None or first.type != aiohttp.WSMsgType.TEXT:
                    # this socket dropped too before the reply: the same token works again
                    await ws.close()
                    if loop.time() >= deadline:
                        raise ConnectionError("no reply to resume within the grace period")
                    await asyncio.sleep(RESUME_RETRY_S)
                    continue
                reply = safejson.loads(first.data, max_bytes=MAX_SERVER_MESSAGE_BYTES)
                if not isinstance(reply, dict) or reply.get("type") != "resumed":
                    await ws.close()
                    raise ServerError(reply if isinstance(reply, dict) else {"message": "not an object"})
                self._track_resumption(reply)
                self._track_presence(reply)
                self.messages.append(reply)
                received = reply["received"]
                if received is None:
                    # resumed through another replica after ours died (docs/protocol.md
                    # "Reconnecting"): nobody can say which of our messages were read. Those sent
                    # before the drop and still unanswered are lost; those sent since went nowhere.
                    self.resyncs += 1
                    lost = ConnectionError("the signalling replica that read this request stopped; "
                                           "its reply is lost (send it again if still wanted)")
                    for ref, waiter in self._waiters.items():
                        if ref in self._asked_before_drop and not waiter.done():
                            waiter.set_exception(lost)
                    received = unsent_from
                    self._unacknowledged = deque((i, t) for i, t in self._unacknowledged if i >= unsent_from)
                oldest = self._unacknowledged[0][0] if self._unacknowledged else self._sent
                if received > self._sent or (received < self._sent and oldest > received):
                    await ws.close()
                    raise ConnectionError(f"the server read {received} of {self._sent} messages and "
                                          f"{self._sent - received} are no longer kept to send again")
                # what it did not read goes again, in order, with what is sent meanwhile (send()
                # keeps those while this runs), until none is left; then the new socket takes over
                following = received
                while batch := [(i, text) for i, text in self._unacknowledged if i >= following]:
                    for i, text in batch:
                        await ws.send_str(text)
                        following = i + 1
                self.ws = ws
                self.resumes += 1
                self._reader = asyncio.ensure_future(self._read(ws))
                self._changed.set()
                return
        except Exception as e:
            log.warning("resuming failed: %s", e)
            self.resume_error = e
            self._ended = True
            for waiter in self._waiters.values():  # their replies will never come
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"the connection was lost: {e}"))
            self._changed.set()
        finally:
            self._resuming = None

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Wait until predicate() is truthy, re-checking whenever a message arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not met in time")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))
            except TimeoutError:
                pass

    async def wait_message(self, mtype: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        def find():
            for m in self.messages:
                if m.get("type") == mtype and all(m.get(k) == v for k, v in match.items()):
                    return m
            return None

        return await self.wait_for(find, timeout)

    # --- room ---------------------------------------------------------------------------------
    async def join(self, room: str, name: str = "", grant: str | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "join", "room": room, "name": name}
        if grant:
            msg["grant"] = grant
        joined = await self.request(msg)
        self.room = room
        self.participant = joined["participant"]
        self.participants.update({p["id"]: p for p in joined.get("participants", [])})
        if self.e2ee is not None:
            self._e2ee_send(self.e2ee.start(room, self.participant["id"], time.time()))
            self._e2ee_timer = asyncio.ensure_future(self._e2ee_ticks())
        return joined

    # --- end-to-end encryption (docs/e2ee.md) ----------------------------------------------------
    def _e2ee_send(self, out: list[Outgoing]) -> None:
        """Send (or keep until the reliable data channel is open) what the key provider says to."""
        self._e2ee_outbox.extend(out)
        channel = self.channels.get("reliable")
        if channel is None or channel.readyState != "open":
            return
        while self._e2ee_outbox:
            o = self._e2ee_outbox.pop(0)
            self.send_data(o.text, topic=o.topic, to=o.to)

    async def _e2ee_ticks(self) -> None:
        assert self.e2ee is not None
        while not self._closed:
            await asyncio.sleep(0.2)
            self._e2ee_send(self.e2ee.tick(time.time()))

    def _track_presence(self, msg: dict[str, Any]) -> None:
        """Keep `participants` current (docs/protocol.md: `presence` may name you, or someone the
        `joined` reply already listed; it is applied as a set update, `left` first)."""
        kind = msg.get("type")
        joined: list[Any] = []
        left: list[Any] = []
        if kind == "participant_joined":
            joined = [msg.get("participant")]
        elif kind == "participant_left":
            left = [msg.get("participant")]
        elif kind == "presence":
            joined = msg.get("joined") or []
            left = [e.get("participant") for e in msg.get("left") or [] if isinstance(e, dict)]
        elif kind == "resumed" and isinstance(msg.get("resync"), dict):
            # the room as it is now replaces what we knew: events were lost with the replica
            joined = msg["resync"].get("participants") or []
            left = [pid for pid in self.participants if pid not in
                    {i.get("id") for i in joined if isinstance(i, dict)}]
            live = {t.get("track") for t in msg["resync"].get("tracks") or [] if isinstance(t, dict)}
            self.remote = {tid: entry for tid, entry in self.remote.items() if tid in live}
        me = (self.participant or {}).get("id")
        for pid in left:
            if isinstance(pid, str):
                self.participants.pop(pid, None)
                if self.e2ee is not None and pid != me:
                    self._e2ee_send(self.e2ee.on_left(pid, time.time()))
        for info in joined:
            if isinstance(info, dict) and isinstance(info.get("id"), str) and info["id"] != me:
                self.participants[info["id"]] = info

    async def publish(self, audio: MediaStreamTrack | None = None, video: MediaStreamTrack | None = None,
                      screen: MediaStreamTrack | None = None, data: bool = False) -> None:
        """Publish on one connection: a microphone, a camera and a screen share (any of them), and
        with `data` the data channels (`send_data`; alone, a data-only connection).
        `published` then maps "audio", "video" and "screen" to the track ids."""
        if self.e2ee is not None and video is not None and self.video_codec.upper() != "VP8":
            raise E2eeError(f"end-to-end encryption of {self.video_codec} is not supported by this client (VP8)")
        if self.e2ee is not None and self.e2ee.identity_bound:
            data = True  # the keys travel over the data channels
        pc = self.publisher = _new_pc(self.ice_servers)
        added = []
        for track, source in ((audio, "microphone"), (video, "camera"), (screen, "screen")):
            if track is None:
                continue
            t = pc.addTransceiver(track, direction="sendonly")
            added.append((t, source))
            if track.kind == "video":
                caps = RTCRtpSender.getCapabilities("video").codecs
                want = f"video/{self.video_codec}".lower()
                prefs = [c for c in caps if c.mimeType.lower() in (want, "video/rtx")]
                t.setCodecPreferences(prefs)
        if data:
            # after the transceivers: aiortc bundling a data channel made first with m-lines added
            # later stops the transport they share when the answer comes (its SCTP is "unbundled")
            for label, options in (("reliable", {}), ("lossy", {"ordered": False, "maxRetransmits": 0})):
                self._open_channel(pc, label, options)
        if self.e2ee is not None:
            assert self.participant is not None, "join() first"
            for t, _ in added:
                encrypt_sender(t.sender, self.e2ee.send_key)  # one key (one counter) for all tracks
        await pc.setLocalDescription(await pc.createOffer())
        self._sources = {t.mid: source for t, source in added}
        await self.republish()
        for t, source in added:
            key = {"microphone": "audio", "camera": "video"}.get(source, source)
            self.published[key] = f"TR_{self.participant['id']}_{t.mid}"

    def _open_channel(self, pc: RTCPeerConnection, label: str, options: dict[str, Any]) -> None:
        channel = self.channels[label] = pc.createDataChannel(label, **options)

        @channel.on("message")
        def _message(message: Any) -> None:
            try:
                msg = safejson.loads(message, max_bytes=MAX_SERVER_MESSAGE_BYTES)
            except (safejson.JsonError, TypeError) as e:
                log.warning("ignoring a data channel message that is not JSON text: %s", e)
                return
            if isinstance(msg, dict):
                self.data.append(msg)
                if self.e2ee is not None and str(msg.get("topic", "")).startswith("e2ee/"):
                    self._e2ee_send(self.e2ee.on_message(msg, time.time()))
                self._changed.set()

        @channel.on("open")
        def _open() -> None:
            if label == "reliable":
                self._e2ee_send([])
            self._changed.set()

    async def wait_data_open(self, timeout: float = 15.0) -> None:
        """Wait until the reliable data channel is open (`publish(data=True)` first)."""
        assert "reliable" in self.channels, "publish(data=True) first"
        await self.wait_for(lambda: self.channels["reliable"].readyState == "open", timeout)

    def send_data(self, text: str, topic: str = "chat", to: list[str] | None = None, lossy: bool = False,
                  id: str | int | None = None) -> None:  # noqa: A002 (the protocol's field name)
        """Send a data message to the room (or to the participants `to`), docs/protocol.md."""
        msg: dict[str, Any] = {"type": "data", "topic": topic, "data": text}
        if to:
            msg["to"] = to
        if id is not None:
            msg["id"] = id
        self.channels["lossy" if lossy else "reliable"].send(json.dumps(msg))

    def data_received(self, topic: str | None = None) -> list[dict[str, Any]]:
        """The `data` messages received so far (of `topic`), in order."""
        return [m for m in self.data if m.get("type") == "data" and topic in (None, m.get("topic"))]

    async def republish(self) -> None:
        """Offer the publish connection (again): what was unpublished since is published anew."""
        pc = self.publisher
        assert pc is not None, "publish() first"
        if pc.signalingState == "stable":
            await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "target": "publisher", "sdp": pc.localDescription.sdp, "sources": self._sources}
        if self.e2ee is not None:
            offer["encryption"] = "sframe"
        reply = await self.request(offer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))

    async def unpublish(self, track_id: str) -> dict[str, Any]:
        """Stop publishing one track (its m-line stays negotiated, its sender keeps running unheard)."""
        return await self.request({"type": "unpublish", "track": track_id})

    async def _on_subscriber_offer(self, msg: dict[str, Any]) -> None:
        try:
            await self._apply_subscriber_offer(msg)
        except Exception:
            # a task nobody awaits: report it here, unless closing interrupted it (then it is moot)
            if not self._closed:
                log.exception("applying the subscriber offer failed")

    async def _apply_subscriber_offer(self, msg: dict[str, Any]) -> None:
        async with self._sub_lock:
            if self._closed:
                return
            if self.subscriber is None:
                self.subscriber = _new_pc(self.ice_servers)
            pc = self.subscriber
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            for t in pc.getTransceivers():
                _route_rtx(t.receiver)
                info = (msg.get("tracks") or {}).get(t.mid)
                if isinstance(info, dict) and info.get("encryption") == "sframe":
                    self._decrypt(t.receiver, info)
            if self.on_offer_applied is not None:
                self.on_offer_applied(pc)
            await pc.setLocalDescription(await pc.createAnswer())
            await self.send({"type": "answer", "target": "subscriber", "sdp": pc.localDescription.sdp})
            tracks = msg.get("tracks") or {}
            current: dict[str, tuple[dict[str, Any], MediaStreamTrack]] = {}
            for t in pc.getTransceivers():
                info = tracks.get(t.mid)
                if info is not None and t.receiver.track is not None:
                    current[info["track"]] = (info, t.receiver.track)
            added = [k for k in current if k not in self.remote]
            self.remote = current
            for k in added:
                if self.on_track is not None:
                    self.on_track(*current[k])
            self._changed.set()

    def _decrypt(self, receiver: RTCRtpReceiver, info: dict[str, Any]) -> None:
        """An end-to-end encrypted track: its frames are decrypted before decoding, with its sender's key."""
        if self.e2ee is None:
            if info["track"] not in self.remote:
                log.warning("track %s is end-to-end encrypted and this client has no key: it will not decode",
                            info["track"])
            return
        self.e2ee.sender_seen(str(info.get("participant")))
        track = str(info["track"])

        def dropped(why: str) -> None:
            self.undecryptable[track] += 1
            if self.undecryptable[track] in (1, 100, 1000):
                log.warning("%d frame(s) of track %s did not decrypt (last: %s)", self.undecryptable[track], track, why)

        decrypt_receiver(receiver, self.e2ee.keyring, dropped)

    async def wait_track(self, kind: str | None = None, participant: str | None = None,
                         timeout: float = 15.0) -> tuple[dict[str, Any], MediaStreamTrack]:
        def find():
            for info, track in self.remote.values():
                if (kind is None or info["kind"] == kind) and participant in (None, info["participant"]):
                    return info, track
            return None

        return await self.wait_for(find, timeout)

    async def mute(self, kind: str, muted: bool) -> None:
        await self.request({"type": "mute", "track": self.published[kind], "muted": muted})

    async def subscription(self, track: str, layer: str | None = None, width: int | None = None,
                           height: int | None = None, pinned: bool | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "subscription", "track": track}
        if layer is not None:
            msg["layer"] = layer
        if width is not None:
            msg["width"], msg["height"] = width, height
        if pinned is not None:
            msg["pinned"] = pinned
        return await self.request(msg)

    async def allocation(self) -> dict[str, Any]:
        """Why this participant receives the layers it receives (the `allocation` reply)."""
        return await self.request({"type": "allocation"})

    async def leave(self) -> None:
        if self.ws is not None and not self.ws.closed:
            try:
                await self.request({"type": "leave"}, timeout=5)
            except (ServerError, TimeoutError, ConnectionError):
                pass

    async def close(self) -> None:
        self._closed = True
        for task in (self._pinger, self._resuming, self._e2ee_timer):
            if task is not None:
                task.cancel()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self.session is not None:
            await self.session.close()


def _route_rtx(receiver: Any) -> None:
    """Let aiortc route retransmissions (RFC 4588 RTX) to this receiver.

    aiortc's RTP router knows a receiver by its media SSRC and its payload types; an RTX packet has
    the RTX SSRC of the offer's `a=ssrc-group:FID` and the RTX payload type, which every video m-line
    shares. With more than one video m-line the router cannot choose and drops every retransmission,
    so a subscriber that loses one packet waits for its jitter buffer to give up (~17 s of frozen
    video). The receiver itself unwraps RTX once it gets it: register the RTX SSRC when it starts.
    Wrapped before aiortc's connect step calls `receive` (it runs after setRemoteDescription returns).
    """
    if getattr(receiver, "_basement_rtx_routed", False):
        return
    receiver._basement_rtx_routed = True
    receive = receiver.receive

    async def receive_and_route_rtx(parameters: Any) -> None:
        await receive(parameters)
        router = receiver.transport._rtp_router
        for encoding in parameters.encodings:
            if encoding.rtx is not None:
                router.ssrc_table[encoding.rtx.ssrc] = receiver

    receiver.receive = receive_and_route_rtx
