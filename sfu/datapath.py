"""Data paths: which code forwards packets — `native` (the C extension `sfu._native`) or `python`.

Both implement the same per-packet contract and are held to it by the same tests:

* `DownTrack.forward` (Python) and `NativeDownTrack` (C: `DownTrackCore`) rewrite, cache and send
  one packet for one subscriber. `NativeDownTrack` is the Python DownTrack with its per-packet state
  stored in C, so the policy code (layer selection, pauses, NACK budgets, RTCP) reads and writes the
  same attributes on either path.
* A Track's fan-out is one call per received packet: a Python loop, or `_native.fanout`, which
  forwards to every DownTrack, protects with the transport's native SRTP (`_native.Egress`, keyed
  from the DTLS exporter) and flushes each socket's queue with one `sendmmsg` (once per received
  batch when the packets come from a `MediaSocket`).
* A publisher's `Ingress` (`sfu.ingress.ingress_class`): on the native path a `NativeIngress`, whose
  `on_rtp` does the common case (the next packet of a known media SSRC) in C and hands every other
  packet to the Python method.
* The receive-side bandwidth estimate (what a publisher's REMB carries) is aiortc's
  RemoteBitrateEstimator on the Python path and `_native.RembEstimator`, the same algorithm giving
  the same results, on the native path (`remb_estimator`). With transport-wide congestion control
  negotiated, the arrival of each transport-wide number instead (`transport_arrivals`:
  `sfu.transport_arrivals.TransportArrivals` or `_native.TransportArrivals`).
* Reception statistics and the NACK window of each incoming stream: `sfu.reception.Reception`, or
  `NativeReception` (`_native.ReceptionCore`: the same fields and per-packet update in C); a
  layer's rate accounting: `sfu.track.Layer`, or `NativeLayer` (`_native.LayerCore`); a layer's
  packets kept for NACKs: `sfu.packet_ring.PacketRing`, or `_native.PacketRing`.
* Parsing what arrives: `sfu.rtp`'s parse / vp8_descriptor / vp9_descriptor / extension, or their C twins
  (`_native.parse`, ...), which return objects with the same attributes and raise the same
  RtpError (`parsers`).
* Receiving: on the native path the ICE host candidates' sockets are our own, read with `recvmmsg`
  by `_native.MediaSocket` (`sfu.media_socket`; its twin is `PyMediaSocket`), and a connected
  transport's SRTP/SRTCP is unprotected by `_native.SrtpSession` as it is read (`sfu.native_receive`);
  the Python path keeps uvloop's sockets and aiortc's receive path (pylibsrtp behind aiortc's DTLS
  task). Both hand the same plaintext to the same handlers.

The choice is process-wide (setting `datapath`), made before any media flows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.rate import RemoteBitrateEstimator

from sfu import reception, rtp, track, transport
from sfu.downtrack import DownTrack
from sfu.metrics import STATS
from sfu.transport_arrivals import Arrivals, TransportArrivals

if TYPE_CHECKING:
    from sfu.track import Layer

try:
    from sfu import _native
except ImportError as e:  # not built: only the Python path is available
    _native = None
    _IMPORT_ERROR: ImportError | None = e
else:
    _IMPORT_ERROR = None

__all__ = ["NAMES", "DataPathError", "available", "configure", "current", "downtrack_class", "fanout",
           "parsers",
           "remb_estimator", "transport_arrivals"]

NAMES = ("native", "python")

Fanout = Callable[[list[Any], bytes, "rtp.RtpView", "Layer", bool, "rtp.Picture | None", float], None]


class DataPathError(RuntimeError):
    """The configured data path cannot run here (the native extension is not built)."""


def available() -> bool:
    return _native is not None


def python_fanout(downtracks: list[Any], data: bytes, view: rtp.RtpView, layer: Layer, keyframe: bool,
                  picture: rtp.Picture | None, now: float) -> None:
    for dt in downtracks:
        dt.forward(data, view, layer, keyframe, picture, now)


def native_fanout(downtracks: list[Any], data: bytes, view: rtp.RtpView, layer: Layer, keyframe: bool,
                  picture: rtp.Picture | None, now: float) -> None:
    if downtracks:
        if isinstance(picture, rtp.Av1Picture):  # (the C side reads VP8 and VP9 descriptors itself)
            packets, nbytes = _native.fanout(downtracks, data, layer, keyframe, now,
                                             (picture.start, picture.keyframe, picture.tid, picture.sid, picture.end))
        else:
            packets, nbytes = _native.fanout(downtracks, data, layer, keyframe, now)
        traffic = STATS.traffic
        traffic.packets_out += packets
        traffic.bytes_out += nbytes


if _native is not None:

    class NativeDownTrack(_native.DownTrackCore, DownTrack):
        """DownTrack whose per-packet state and forwarding live in C (`sfu/native/forward.c`)."""

        def _resolve_extensions(self) -> None:
            super()._resolve_extensions()
            slot = self.slot
            self._configure_native(pt=slot.pt, ssrc=slot.ssrc, ext_map=self._ext_map, mid_in=self._mid_in,
                                   ast_in=self._ast_in, mid_out=self._mid_out)

        def forward(self, data: bytes, view: rtp.RtpView, layer: Layer, keyframe: bool,
                    picture: rtp.Picture | None, now: float) -> None:
            native_fanout([self], data, view, layer, keyframe, picture, now)

    class NativeLayer(_native.LayerCore, track.Layer):
        """Layer whose rate accounting (packets, bytes, the sliding-second bitrate) lives in C
        (`sfu/native/layer.c`), where IngressCore updates it."""

    class NativeReception(_native.ReceptionCore, reception.ReceptionReports):
        """Reception whose per-packet update, NACK window and fields live in C (`sfu/native/reception.c`)."""

        __slots__ = ()

_current = "python"


def configure(name: str, udp_gso: bool = True, aes_ni: bool = True) -> None:
    """Select the data path for everything created from now on. Raises DataPathError when `native`
    is asked for but the extension is not built. `udp_gso`: native Egresses made from now on send
    runs of equal-length datagrams as one segmented send (sfu/gso.py). `aes_ni`: native SRTP
    sessions run AES on AES-NI / PCLMULQDQ where the CPU has them (sfu/native/aes_gcm.c), else on
    OpenSSL's EVP; the bytes are the same."""
    global _current
    if name not in NAMES:
        raise ValueError(f"datapath must be one of {', '.join(NAMES)}, not {name!r}")
    if name == "native" and _native is None:
        raise DataPathError(f"datapath 'native' needs the extension sfu._native, which did not import "
                            f"({_IMPORT_ERROR}); reinstall with `pip install -e .` (gcc, Python headers and "
                            f"libssl-dev are needed) or set --datapath python")
    _current = name
    transport.configure_egress(_native.Egress if name == "native" else None)
    if name == "native":
        _native.set_gso(udp_gso)
        _native.set_aes("auto" if aes_ni else "openssl")
        transport.configure_receive(_native.SrtpSession, _native.SrtpError, _native.MediaSocket)
        reception.configure(NativeReception)
        track.configure(NativeLayer, _native.PacketRing)
    else:
        transport.configure_receive(None)
        reception.configure(reception.Reception)
        track.configure(track.Layer)


def current() -> str:
    return _current


def downtrack_class() -> type[DownTrack]:
    return NativeDownTrack if _current == "native" else DownTrack


def fanout() -> Fanout:
    return native_fanout if _current == "native" else python_fanout


def remb_estimator() -> Any:
    """A new receive-side bandwidth estimator for one publisher: `add(arrival_ms, abs_send_time,
    size, ssrc) -> (bitrate, ssrcs) | None`."""
    return _native.RembEstimator() if _current == "native" else RemoteBitrateEstimator()


def transport_arrivals() -> Arrivals:
    """A new record of a publisher transport's transport-wide sequence numbers (sfu.transport_arrivals)."""
    return _native.TransportArrivals() if _current == "native" else TransportArrivals()


def parsers() -> tuple[Callable[[bytes], Any], Callable[[Any], Any], Callable[[Any], Any],
                       Callable[[bytes, Any, int], bytes | None]]:
    """(parse, vp8_descriptor, vp9_descriptor, extension) as `sfu.rtp` defines them, on this data path."""
    if _current == "native":
        return _native.parse, _native.vp8_descriptor, _native.vp9_descriptor, _native.extension
    return rtp.parse, rtp.vp8_descriptor, rtp.vp9_descriptor, rtp.extension
