"""A GStreamer webrtcbin peer driven over stdin/stdout JSON lines (tests/e2e/gstreamer).

Argument: the address libnice gathers on (default 127.0.0.1). Runs under the system interpreter
(`/usr/bin/python3`: the gi bindings are Debian packages, the project venv has none), so it imports
nothing from this repository and only the standard library and gi. One JSON object per line each way.

Commands (stdin):
  {"cmd": "publish", "width": 320, "height": 240, "fps": 30, "audio": true}
        videotestsrc (live) -> vp8enc deadline=1 -> webrtcbin, plus audiotestsrc -> opusenc; emits
        the offer (`offer` event) once webrtcbin made it
  {"cmd": "answer", "sdp": "..."}     the SFU's answer to our publish offer
  {"cmd": "subscribe"}                 an empty webrtcbin that will receive
  {"cmd": "offer", "sdp": "..."}      the SFU's subscribe offer: emits `answer`
  {"cmd": "stats"}                     emits `stats`
  {"cmd": "quit"}

Events (stdout):
  {"event": "ready"}
  {"event": "offer" | "answer", "sdp": "..."}
  {"event": "candidate", "candidate": "candidate:...", "sdpMLineIndex": 0}
  {"event": "state", "connection": "...", "ice": "..."}
  {"event": "decoding", "kind": "video", "width": 320, "height": 240}   first decoded video frame
  {"event": "stats", "now": <monotonic s>, "connection": ..., "video": {"frames", "width", "height"},
   "audio": {"buffers"}}
  {"event": "error", "message": "..."}                                    a pipeline error

Decoded frames are counted on vp8dec's source pad (a probe), so a count is a frame the decoder
produced, at the size of the pad's negotiated caps.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

_out_lock = threading.Lock()


def emit(event: str, **fields: object) -> None:
    line = json.dumps({"event": event, **fields})
    with _out_lock:  # called from GStreamer's streaming threads too
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def log(msg: str) -> None:
    sys.stderr.write(f"gst_peer: {msg}\n")
    sys.stderr.flush()


class Peer:
    def __init__(self, loop: GLib.MainLoop, local_address: str = "127.0.0.1") -> None:
        self.loop = loop
        self.pipe = Gst.Pipeline.new("peer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        # libnice leaves loopback out when it gathers; the tests run in a namespace with only `lo`
        # Both kept for the process's life: in 1.22 these properties hand out objects without a
        # reference, and pygobject drops one when its wrapper goes: webrtcbin's ICE agent would be freed
        self._ice = self.webrtc.get_property("ice-agent")
        self._agent = self._ice.get_property("agent")
        address = Nice.Address()
        address.set_from_string(local_address)
        self._agent.add_local_address(address)
        self.webrtc.connect("on-ice-candidate", self._on_candidate)
        self.webrtc.connect("notify::connection-state", self._on_state)
        self.webrtc.connect("notify::ice-connection-state", self._on_state)
        self.webrtc.connect("pad-added", self._on_pad)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.audio_buffers = 0
        self._count_lock = threading.Lock()
        self._offered = False

    # --- publish -----------------------------------------------------------------------------
    def publish(self, width: int, height: int, fps: int, audio: bool) -> None:
        video = Gst.parse_bin_from_description(
            f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
            f"framerate={fps}/1 ! videoconvert ! vp8enc deadline=1 keyframe-max-dist=3000 ! rtpvp8pay pt=96 "
            # (a bin ending in a bare caps string does not parse: a capsfilter it is)
            "! capsfilter caps=application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
            True)
        self.pipe.add(video)
        video.link(self.webrtc)
        if audio:
            sound = Gst.parse_bin_from_description(
                "audiotestsrc is-live=true wave=sine freq=440 volume=0.5 ! audioconvert ! audioresample ! "
                "opusenc ! rtpopuspay pt=111 ! capsfilter caps=application/x-rtp,media=audio,encoding-name=OPUS,"
                "payload=111,clock-rate=48000", True)
            self.pipe.add(sound)
            sound.link(self.webrtc)
        for i in range(2 if audio else 1):
            t = self.webrtc.emit("get-transceiver", i)
            if t is not None:
                t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.pipe.set_state(Gst.State.PLAYING)

    def _on_negotiation_needed(self, _element: Gst.Element) -> None:
        if self._offered:
            return  # one offer/answer per publish: the test relays exactly one
        self._offered = True
        promise = Gst.Promise.new_with_change_func(self._on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def _on_offer_created(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        emit("offer", sdp=offer.sdp.as_text())

    def apply_answer(self, sdp: str) -> None:
        self._set_remote(sdp, GstWebRTC.WebRTCSDPType.ANSWER, None)

    # --- subscribe ---------------------------------------------------------------------------
    def subscribe(self) -> None:
        self.pipe.set_state(Gst.State.PLAYING)

    def apply_offer(self, sdp: str) -> None:
        self.pipe.set_state(Gst.State.PLAYING)  # (a no-op once playing)
        self._set_remote(sdp, GstWebRTC.WebRTCSDPType.OFFER, self._create_answer)

    def _create_answer(self) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_answer_created, None)
        self.webrtc.emit("create-answer", None, promise)

    def _on_answer_created(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()
        answer = reply.get_value("answer")
        if answer is None:
            emit("error", message=f"create-answer failed: {reply.to_string() if reply else 'no reply'}")
            return
        self.webrtc.emit("set-local-description", answer, Gst.Promise.new())
        emit("answer", sdp=answer.sdp.as_text())

    def _set_remote(self, sdp: str, kind: GstWebRTC.WebRTCSDPType, then: object) -> None:
        ok, msg = GstSdp.SDPMessage.new_from_text(sdp)
        if ok != GstSdp.SDPResult.OK:
            emit("error", message="could not parse the remote SDP")
            return
        desc = GstWebRTC.WebRTCSessionDescription.new(kind, msg)

        def done(promise: Gst.Promise, _data: object) -> None:
            reply = promise.get_reply()
            if reply is not None and reply.has_field("error"):
                emit("error", message=f"set-remote-description: {reply.get_value('error')}")
                return
            if then is not None:
                then()  # type: ignore[operator]

        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new_with_change_func(done, None))

    def _on_pad(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_string("encoding-name") or ""
        if name.upper() == "VP8":
            chain = "rtpvp8depay ! vp8dec name=dec ! fakesink sync=false async=false"
        elif name.upper() == "OPUS":
            chain = "rtpopusdepay ! opusdec name=dec ! fakesink sync=false async=false"
        else:
            chain = "fakesink sync=false async=false"
        decode = Gst.parse_bin_from_description(chain, True)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))
        dec = decode.get_by_name("dec")
        if dec is not None:
            kind = "video" if name.upper() == "VP8" else "audio"
            dec.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._on_decoded, kind)

    def _on_decoded(self, pad: Gst.Pad, _info: Gst.PadProbeInfo, kind: str) -> Gst.PadProbeReturn:
        with self._count_lock:
            if kind == "video":
                caps = pad.get_current_caps()
                if caps is not None:
                    s = caps.get_structure(0)
                    size = (s.get_int("width")[1], s.get_int("height")[1])
                    if size != self.size:
                        self.size = size
                        emit("decoding", kind="video", width=size[0], height=size[1])
                self.frames += 1
            else:
                self.audio_buffers += 1
        return Gst.PadProbeReturn.OK

    # --- common ------------------------------------------------------------------------------
    def _on_candidate(self, _element: Gst.Element, mline: int, candidate: str) -> None:
        emit("candidate", candidate=candidate, sdpMLineIndex=mline)

    def _on_state(self, _element: Gst.Element, _spec: object) -> None:
        emit("state", **self._states())

    def _states(self) -> dict[str, str]:
        conn = self.webrtc.get_property("connection-state")
        ice = self.webrtc.get_property("ice-connection-state")
        return {"connection": conn.value_nick, "ice": ice.value_nick}

    def _on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        err, debug = message.parse_error()
        emit("error", message=f"{message.src.get_name()}: {err.message} ({debug})")

    def stats(self) -> None:
        with self._count_lock:
            video = {"frames": self.frames, "width": self.size[0] if self.size else 0,
                     "height": self.size[1] if self.size else 0}
            audio = {"buffers": self.audio_buffers}
        emit("stats", now=time.monotonic(), video=video, audio=audio, **self._states())

    def handle(self, cmd: dict) -> None:
        try:
            self._handle(cmd)
        except Exception as e:  # the test must hear of it, not wait for an event that never comes
            emit("error", message=f"{cmd.get('cmd')!r} failed: {type(e).__name__}: {e}")

    def _handle(self, cmd: dict) -> None:
        what = cmd.get("cmd")
        if what == "publish":
            self.publish(int(cmd.get("width", 320)), int(cmd.get("height", 240)), int(cmd.get("fps", 30)),
                         bool(cmd.get("audio", True)))
        elif what == "answer":
            self.apply_answer(cmd["sdp"])
        elif what == "subscribe":
            self.subscribe()
        elif what == "offer":
            self.apply_offer(cmd["sdp"])
        elif what == "stats":
            self.stats()
        elif what == "quit":
            self.loop.quit()
        else:
            emit("error", message=f"unknown command {what!r}")


def main() -> None:
    Gst.init(None)
    loop = GLib.MainLoop()
    # argv[1]: the address libnice gathers on (default loopback; a test link's client address)
    peer = Peer(loop, sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1")

    def read_stdin() -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
            except ValueError as e:
                emit("error", message=f"bad command line: {e}")
                continue
            # every GStreamer call happens on the main loop's thread
            GLib.idle_add(lambda c=cmd: (peer.handle(c), False)[1])
        GLib.idle_add(lambda: (loop.quit(), False)[1])  # stdin closed: the test is gone

    threading.Thread(target=read_stdin, daemon=True).start()
    emit("ready")
    loop.run()
    peer.pipe.set_state(Gst.State.NULL)
    # skip interpreter teardown: pygobject's finalisers would unref libnice's agent a second time
    # (the `agent` property is handed out without a reference in 1.22) and print GLib criticals
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
