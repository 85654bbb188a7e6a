"""PeerTransport: aiortc used for ICE, DTLS and SRTP keying only.

This is the ONLY module that installs hooks on aiortc's (and aioice's) private API (some live in the
modules it installs them from: sfu.consent, sfu.ice_tcp, sfu.udp_mux); everything they rely on is
pinned by `aiortc==1.16.0` in pyproject.toml. See docs/architecture.md ("aiortc hooks") for the list
and why each hook exists. In short:

* ingress: `RTCDtlsTransport._handle_rtp_data` / `_handle_rtcp_data` are replaced on the instance, so
  decrypted packets reach the SFU as bytes before aiortc parses, routes or decodes them;
* the aiortc receivers are never started (no jitter buffer, no decoder thread), and the aiortc
  senders run no encoder loop and emit no RTCP of their own (their SRs would carry zero timestamps);
* egress: SRTP-protect with the transport's outbound session and `sendto` on the nominated ICE pair,
  synchronously: no awaits, no queue hops on the per-packet path;
* ICE: which local addresses aioice gathers on and which address is advertised are settings;
  remote candidates (trickled or in SDP) are capped and screened (`sfu.candidates`) before aioice
  may send a check to them.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import dataclasses
import functools
import ipaddress
import logging
import random
import re
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from struct import error as struct_error
from typing import Any

import aioice.ice
import aioice.mdns
import aioice.stun
import aioice.utils
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription, rtcdtlstransport
from aiortc import codecs as _artc_codecs
from aiortc import rtcpeerconnection as _artc_pc
from aiortc import rtcrtpreceiver as _artc_receiver
from aiortc import rtp as artp
from aiortc import sdp as asdp
from aiortc.exceptions import InvalidStateError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters

from sfu import consent, ice_tcp, media_socket, twcc, udp_mux
from sfu import sdp as sdpmod
from sfu.candidates import CandidatePolicy, CandidateScreen, parse_ranges
from sfu.dependency_descriptor import URI_DD
from sfu.estimator import SendSideEstimator
from sfu.metrics import STATS
from sfu.native_receive import NativeReceive
from sfu.pacing import Pacing
from sfu.playout_delay import URI_PLAYOUT_DELAY, PlayoutDelay
from sfu.prober import Prober
from sfu.rtp import URI_TWCC
from sfu.transport_seq import TransportSequence

log = logging.getLogger("basement.transport")

_ORIGINAL_GET_HOST_ADDRESSES = aioice.ice.get_host_addresses
_ORIGINAL_ADD_REMOTE_CANDIDATE = aioice.ice.Connection.add_remote_candidate
_ORIGINAL_ADD_RESOLVED_CANDIDATE = aioice.ice.Connection._add_remote_candidate
_ORIGINAL_CHECK_PERIODIC = aioice.ice.Connection._check_periodic
_ORIGINAL_PARSE_STUN = aioice.stun.parse_message
_ORIGINAL_GATHER = aioice.ice.Connection.gather_candidates
_ORIGINAL_CLOSE = aioice.ice.Connection.close
_ORIGINAL_MAYBE_COMPLETE = aioice.ice.Connection._check_list_maybe_complete
_ORIGINAL_CHECK_COMPLETE = aioice.ice.Connection.check_complete
_ORIGINAL_QUERY_CONSENT = aioice.ice.Connection.query_consent
_ORIGINAL_CODEC_COMPATIBLE = _artc_pc.is_codec_compatible


def _parse_stun(data: bytes) -> Any:
    """aioice's STUN parser, with every malformed message a ValueError, and nothing parsed that is
    not STUN by its first byte (RFC 7983; on the Python path every media datagram comes this way:
    0.45 µs each instead of aioice's 0.75).

    Its attribute decoders trust the attribute lengths: a PRIORITY or an address attribute of the
    wrong length raises struct.error, which its callers (catching ValueError) let escape into the
    event loop: one logged traceback per datagram anyone sends to a media port. As a ValueError the
    datagram is "not STUN" to aioice, which hands it to aiortc's DTLS transport, which drops it.
    """
    if not data or data[0] > 3:  # RFC 7983: not STUN (media on the Python path): no parse at all
        raise ValueError("not STUN")
    try:
        return _ORIGINAL_PARSE_STUN(data)
    except struct_error:
        STATS.drop("stun_malformed")
        raise ValueError("malformed STUN attribute") from None



@dataclass(frozen=True)
class IceConfig:
    """Where one transport's media may flow.

    `addresses`: local addresses to gather host candidates on (None = aioice's choice: every
    interface but loopback). `public_ip`: replaces the address in advertised host candidates
    (NAT 1:1, hostNetwork pods). `port_range`: UDP ports to bind, for firewalls (None = any).
    `allowed_ranges` / `max_remote_candidates`: which remote candidates the SFU may send checks to,
    and how many one transport accepts (see `sfu.candidates`). `udp_port`: every transport's host
    candidates on this one port (`sfu.udp_mux`; 0 = a port per transport). `tcp_port`: also a
    passive ICE-TCP candidate on this TCP port per host address (`sfu.ice_tcp`; 0 = none).
    """

    addresses: tuple[str, ...] | None = None
    public_ip: str = ""
    port_range: tuple[int, int] | None = None
    allowed_ranges: tuple[str, ...] = ("auto",)
    max_remote_candidates: int = 32
    udp_port: int = 0
    tcp_port: int = 0

    @classmethod
    def make(cls, addresses: Iterable[str] | None, public_ip: str = "", port_min: int = 0,
             port_max: int = 0, allowed_ranges: Iterable[str] = ("auto",),
             max_remote_candidates: int = 32, udp_port: int = 0, tcp_port: int = 0) -> IceConfig:
        addrs: tuple[str, ...] | None = tuple(a for a in (addresses or []) if a)
        if addrs == ("auto",) or not addrs:
            addrs = None
        else:
            for a in addrs:
                ipaddress.ip_address(a)  # raises ValueError naming a bad address
        ranges = tuple(allowed_ranges)
        parse_ranges(ranges)  # raises ValueError naming a bad range
        return cls(addrs, public_ip, (port_min, port_max) if port_min else None, ranges, max_remote_candidates,
                   udp_port, tcp_port)

    def candidate_policy(self) -> CandidatePolicy:
        return _candidate_policy(self)


@functools.lru_cache(maxsize=32)
def _candidate_policy(ice: IceConfig) -> CandidatePolicy:
    # the `auto` rule needs the scopes of our own addresses; listing interfaces once is enough
    local = ice.addresses if ice.addresses is not None else _ORIGINAL_GET_HOST_ADDRESSES(True, True)
    return CandidatePolicy.make(ice.allowed_ranges, ice.max_remote_candidates, local)


# The native egress type (`sfu._native.Egress`) when the data path is native, else None: then
# packets are protected with aiortc's pylibsrtp session and sent with the asyncio transport.
_egress_type: Any = None


def configure_egress(egress_type: Any) -> None:
    """Process-wide: send through `egress_type` (set by `sfu.datapath.configure`), or None for Python."""
    global _egress_type
    _egress_type = egress_type


# The native receive session type and its error (`sfu._native.SrtpSession`, `SrtpError`) when the
# data path is native: connected transports then take SRTP/SRTCP off the ICE connection with
# `sfu.native_receive.NativeReceive`; None keeps aiortc's receive path (pylibsrtp).
_receive_type: Any = None
_receive_error: type[Exception] = Exception
# The reader of the ICE host candidates' sockets (`sfu._native.MediaSocket`) when the data path is
# native: those sockets are then ours (`sfu.media_socket`), not the event loop's; None: uvloop's.
_socket_type: Any = None


def configure_receive(session_type: Any, error_type: type[Exception] = Exception, socket_type: Any = None) -> None:
    """Process-wide: unprotect received SRTP with `session_type` and read new ICE sockets with
    `socket_type` (both set by `sfu.datapath.configure`; None: aiortc's and the event loop's)."""
    global _receive_type, _receive_error, _socket_type
    _receive_type, _receive_error, _socket_type = session_type, error_type, socket_type


# DTLS-SRTP profiles offered/accepted, most preferred first (None: aiortc's list, GCM first)
_srtp_profiles: list[Any] | None = None


def configure_srtp(names: Iterable[str]) -> None:
    """Process-wide: the DTLS-SRTP profiles new transports negotiate, e.g. ["SRTP_AEAD_AES_128_GCM"]."""
    global _srtp_profiles
    known = {p.openssl_profile.decode(): p for p in rtcdtlstransport.SRTP_PROFILES}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"SRTP profiles not available here: {', '.join(missing)} (have {', '.join(known)})")
    _srtp_profiles = [known[n] for n in names]


def srtp_keys(dtls: Any) -> tuple[int, bytes, bytes] | None:
    """(libsrtp profile number, our key+salt, the peer's key+salt) of a connected DTLS transport.

    The same exporter call aiortc keys its pylibsrtp sessions with (RFC 5764 §4.2), made again: the
    exporter is deterministic, so the native SRTP and aiortc's agree on the keys.
    """
    ssl = getattr(dtls, "_ssl", None)
    if ssl is None:
        return None
    name = ssl.get_selected_srtp_profile()
    profile = next((p for p in rtcdtlstransport.SRTP_PROFILES if p.openssl_profile == name), None)
    if profile is None:
        return None
    material = ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length))
    ours, theirs = (1, 0) if dtls._role == "server" else (0, 1)
    return (profile.libsrtp_profile, profile.get_key_and_salt(material, ours),
            profile.get_key_and_salt(material, theirs))


# aioice reads these while it gathers; gathering runs inside the task that set the local
# description, so a context variable gives each transport its own settings in one process
_default_ice = IceConfig()
_current_ice: contextvars.ContextVar[IceConfig | None] = contextvars.ContextVar("basement_ice", default=None)


def _ice() -> IceConfig:
    return _current_ice.get() or _default_ice


def configure_ice(addresses: Iterable[str] | None, public_ip: str = "") -> None:
    """Process-wide default for transports without their own IceConfig (e.g. clients, bots)."""
    global _default_ice
    d = _default_ice
    _default_ice = IceConfig.make(addresses, public_ip, *(d.port_range or (0, 0)), d.allowed_ranges,
                                  d.max_remote_candidates, d.udp_port, d.tcp_port)
    _install()


def configure_ports(port_min: int, port_max: int) -> None:
    """Process-wide default UDP port range (0, 0 = any port)."""
    global _default_ice
    _default_ice = dataclasses.replace(_default_ice, port_range=(port_min, port_max) if port_min else None)
    _install()


def configure_udp_port(port: int) -> None:
    """Process-wide default single UDP port for every transport (0 = a port per transport)."""
    global _default_ice
    _default_ice = dataclasses.replace(_default_ice, udp_port=port)
    _install()


def open_udp_port(ice: IceConfig | None = None) -> None:
    """Bind `ice.udp_port` (default: the process-wide settings') on each of `ice.addresses` now, so a
    port in use is an error at startup rather than at the first join (raises OSError naming it)."""
    ice = ice or _default_ice
    if not ice.udp_port:
        return
    loop = asyncio.get_running_loop()
    for host in ice.addresses or ():
        try:
            udp_mux.mux_for(loop, host, ice.udp_port, _socket_type)
        except OSError as exc:
            raise OSError(f"ice_udp_port: cannot bind UDP {host} port {ice.udp_port}: {exc.strerror or exc}") from None


def configure_tcp_port(port: int) -> None:
    """Process-wide default ICE-TCP port (0 = no TCP candidates)."""
    global _default_ice
    _default_ice = dataclasses.replace(_default_ice, tcp_port=port)
    _install()


async def open_tcp_port(ice: IceConfig | None = None) -> None:
    """Listen on `ice.tcp_port` (default: the process-wide settings') on each of `ice.addresses`
    now, so a port in use is an error at startup rather than at the first join (raises OSError)."""
    ice = ice or _default_ice
    if not ice.tcp_port:
        return
    for host in ice.addresses or ():
        try:
            await ice_tcp.listener(host, ice.tcp_port)
        except OSError as exc:
            raise OSError(f"ice_tcp_port: cannot listen on TCP {host} port {ice.tcp_port}: "
                          f"{exc.strerror or exc}") from None


def close_tcp_port(port: int) -> None:
    """Close the ICE-TCP listeners on `port` and every stream on them: a server stopping."""
    ice_tcp.close_port(port)


def close_udp_port(port: int) -> None:
    """Close single-port mode's sockets on `port` (and the transports still on them): a server stopping."""
    udp_mux.close_port(port)


def configure_candidates(allowed_ranges: Iterable[str], max_remote_candidates: int) -> None:
    """Process-wide default remote-candidate screening (see `sfu.candidates`)."""
    global _default_ice
    ranges = tuple(allowed_ranges)
    parse_ranges(ranges)
    _default_ice = dataclasses.replace(_default_ice, allowed_ranges=ranges,
                                       max_remote_candidates=max_remote_candidates)
    _install()


# VP9 (RFC 9628) and AV1 (the AV1 RTP specification), which aiortc 1.16 can neither encode nor
# decode and so does not list: the SFU only forwards them. Profile 0 (8-bit 4:2:0, AV1's "Main") is
# what every browser decodes; their m-lines get NACK, PLI, REMB and RTX like aiortc's own video codecs.
VP9_PROFILE = "0"
AV1_PROFILE = "0"
# Which fmtp parameter names the profile, for the codecs whose profiles are told apart
_PROFILE_PARAMETER = {"video/vp9": "profile-id", "video/av1": "profile"}


def _add_forwarded_codecs() -> None:
    video = _artc_codecs.CODECS["video"]
    feedback = list(next(c for c in video if c.mimeType.lower() == "video/vp8").rtcpFeedback)
    forwarded: list[tuple[str, dict[str, int | str | None]]] = [("video/VP9", {"profile-id": VP9_PROFILE}),
                                                                ("video/AV1", {"profile": AV1_PROFILE})]
    for mime, parameters in forwarded:
        if any(c.mimeType.lower() == mime.lower() for c in video):
            continue
        pt = max(c.payloadType for c in video if c.payloadType is not None) + 1
        video += [RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=pt, rtcpFeedback=feedback,
                                        parameters=parameters),
                  RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=pt + 1,
                                        parameters={"apt": pt})]
    # AV1's layers are in the dependency descriptor: offered on every video m-line (a subscriber's
    # m-line may carry any codec later), kept in an answer only where AV1 was chosen (`keep_dd_for_av1`)
    extensions = _artc_codecs.HEADER_EXTENSIONS["video"]
    if not any(e.uri == URI_DD for e in extensions):
        extensions.append(RTCRtpHeaderExtensionParameters(id=DD_ID, uri=URI_DD))
    _offer_playout_delay(_playout_delay)
    _offer_transport_cc(_transport_cc)


# Whether subscribers are offered the playout delay (setting `playout_delay`)
_playout_delay = True


def configure_playout_delay(enabled: bool) -> None:
    """Process-wide: offer subscribers the playout delay (the default), or not."""
    global _playout_delay
    _playout_delay = enabled
    _offer_playout_delay(enabled)


def _offer_playout_delay(enabled: bool) -> None:
    """The playout delay a lossy subscriber's video is held for (sfu.playout_delay), on the video
    m-lines we offer subscribers; publish answers drop it (`drop_playout_delay`). Not offered, no
    subscriber negotiates it, and nothing is stamped."""
    extensions = _artc_codecs.HEADER_EXTENSIONS["video"]
    offered = any(e.uri == URI_PLAYOUT_DELAY for e in extensions)
    if enabled and not offered:
        extensions.append(RTCRtpHeaderExtensionParameters(id=PLAYOUT_DELAY_ID, uri=URI_PLAYOUT_DELAY))
    elif offered and not enabled:
        extensions[:] = [e for e in extensions if e.uri != URI_PLAYOUT_DELAY]


# Whether subscribers are offered transport-wide congestion control (setting `transport_cc`), and
# what aiortc's lists say now (None: not set up yet; `_install` runs at every PeerTransport)
_transport_cc = True
_transport_cc_offered: bool | None = None


def configure_transport_cc(enabled: bool) -> None:
    """Process-wide: offer subscribers transport-wide congestion control (the default), or not."""
    global _transport_cc
    _transport_cc = enabled
    _offer_transport_cc(enabled)


def _offer_transport_cc(enabled: bool) -> None:
    """Transport-wide congestion control (sfu.twcc, sfu.estimator) on every m-line we offer a
    subscriber, audio included: one sequence numbers everything the transport sends, and a number the
    receiver cannot read on an m-line (not negotiated there) would be reported lost. Answers to
    publishers keep it where the offer has it (sfu.transport_arrivals reports to them); with the
    setting off they drop it (`drop_transport_cc`). aiortc builds offers and answers from these lists."""
    global _transport_cc_offered
    if _transport_cc_offered == enabled:
        return
    _transport_cc_offered = enabled
    for kind in ("audio", "video"):
        extensions = _artc_codecs.HEADER_EXTENSIONS[kind]
        extensions[:] = [e for e in extensions if e.uri != URI_TWCC]
        if enabled:
            extensions.append(RTCRtpHeaderExtensionParameters(id=TWCC_ID, uri=URI_TWCC))
        for codec in _artc_codecs.CODECS[kind]:
            codec.rtcpFeedback = [f for f in codec.rtcpFeedback if f.type != "transport-cc"]
            if enabled and not codec.mimeType.lower().endswith("/rtx"):
                codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


DD_ID = 5  # the dependency descriptor's id in our offers (aiortc's own video extensions are 1 and 3)
TWCC_ID = 4  # transport-wide-cc's, on audio and video m-lines alike (audio has 1 and 2, video 1, 3, 5)
PLAYOUT_DELAY_ID = 6  # on video m-lines


def drop_playout_delay(transceiver: Any) -> None:
    """An answer to a publisher does not negotiate the playout delay: it is the SFU's to set for
    each subscriber (sfu.playout_delay), and a publisher's would reach nobody."""
    transceiver._headerExtensions = [e for e in transceiver._headerExtensions if e.uri != URI_PLAYOUT_DELAY]


def drop_transport_cc(transceiver: Any) -> None:
    """An answer to a publisher does not negotiate transport-wide feedback when the setting
    `transport_cc` is off: the SFU then estimates the uplink itself (REMB, sfu.ingress). (With it
    on, the Ingress reports every number's arrival, and a browser estimates its uplink from that;
    negotiated without that feedback, libwebrtc would stay at its start rate, and the top
    simulcast layer would never start.)"""
    transceiver._headerExtensions = [e for e in transceiver._headerExtensions if e.uri != URI_TWCC]
    for codec in transceiver._codecs:
        codec.rtcpFeedback = [f for f in codec.rtcpFeedback if f.type != "transport-cc"]


def keep_dd_for_av1(transceiver: Any) -> None:
    """An applied offer's video m-line keeps the dependency descriptor only if it will carry AV1.

    Chromium adds the DD to VP8 and VP9 streams too when it is negotiated. A libwebrtc receiver
    then numbers frames by the DD instead of the payload descriptor, and a simulcast switch (a
    stream with other frame numbers and templates) would leave it waiting for references that never
    come; VP8 and VP9 are renumbered in their payload descriptors instead."""
    codecs = transceiver._codecs
    if transceiver.kind == "video" and not (codecs and codecs[0].mimeType.lower() == "video/av1"):
        transceiver._headerExtensions = [e for e in transceiver._headerExtensions if e.uri != URI_DD]


def _codec_compatible(a: RTCRtpCodecParameters, b: RTCRtpCodecParameters) -> bool:
    """aiortc's test, and for VP9 and AV1 the same profile (absent means 0): Chromium offers VP9
    profiles 0 and 2 (10-bit), and answering the latter with our profile-0 entry would promise what
    no peer sent."""
    if not _ORIGINAL_CODEC_COMPATIBLE(a, b):
        return False
    name = _PROFILE_PARAMETER.get(a.mimeType.lower())
    if name is not None:
        return str(a.parameters.get(name, "0")) == str(b.parameters.get(name, "0"))
    return True


def _copy_codec(codec: Any, memo: Any = None) -> Any:
    """`copy.deepcopy` for what aiortc's `find_common_codecs` copies (every codec of every remote
    description it applies): the same result for RTCRtpCodecParameters, whose fields are strings,
    numbers, a list of (type, parameter) feedback entries and a dict of strings and numbers, built
    directly in ~3 µs instead of deepcopy's ~30 µs (≈ 3 % of the SFU's CPU per join in a burst)."""
    if type(codec) is not RTCRtpCodecParameters:
        return copy.deepcopy(codec, memo)
    return RTCRtpCodecParameters(mimeType=codec.mimeType, clockRate=codec.clockRate, channels=codec.channels,
                                 payloadType=codec.payloadType,
                                 rtcpFeedback=[RTCRtcpFeedback(type=f.type, parameter=f.parameter)
                                               for f in codec.rtcpFeedback],
                                 parameters=dict(codec.parameters))


# Payload types an answer takes from the offer. aiortc keeps only 96-127 and renumbers the rest with
# its own, dropping their RTX (whose apt then names nothing); Chromium offers AV1 and some H.264 at
# 35-63, which RFC 5761 §4 leaves dynamic when RTP and RTCP share a port (always, in WebRTC).
DYNAMIC_PAYLOAD_TYPES = frozenset(range(35, 64)) | frozenset(range(96, 128))


def _install() -> None:
    _add_forwarded_codecs()
    artp.DYNAMIC_PAYLOAD_TYPES = DYNAMIC_PAYLOAD_TYPES  # type: ignore[assignment]
    _artc_pc.is_codec_compatible = _codec_compatible
    # (the module uses `copy` for nothing else)
    _artc_pc.copy = types.SimpleNamespace(deepcopy=_copy_codec)  # type: ignore[assignment]
    _artc_receiver.RemoteBitrateEstimator = _receive_estimator  # type: ignore[misc, assignment]
    aioice.ice.get_host_addresses = _host_addresses
    # aioice always binds port 0; its module sees an `asyncio` whose loop honours the port range
    aioice.ice.asyncio = _AsyncioWithPortRange("asyncio")
    # every remote candidate, whether from SDP, trickled or mDNS-resolved, passes these two
    # (hooks on aioice's private API, listed in docs/architecture.md: mypy rightly objects to method patching)
    aioice.ice.Connection.add_remote_candidate = _screened_add_remote_candidate  # type: ignore[method-assign]
    aioice.ice.Connection._add_remote_candidate = _screened_add_resolved_candidate  # type: ignore[method-assign]
    aioice.ice.Connection._check_periodic = _paced_check  # type: ignore[method-assign]
    aioice.stun.parse_message = _parse_stun  # aioice.ice and aioice.turn call it through the module
    aioice.ice.Connection.gather_candidates = _gather_with_tcp  # type: ignore[method-assign]
    aioice.ice.Connection.close = _close_with_tcp  # type: ignore[method-assign]
    aioice.ice.Connection._check_list_maybe_complete = _complete_unless_restarting  # type: ignore[method-assign]
    aioice.ice.Connection.check_complete = _check_complete_noting_nomination  # type: ignore[method-assign]
    aioice.ice.Connection.query_consent = consent.query_consent  # type: ignore[method-assign, assignment]


async def _gather_with_tcp(self: Any) -> None:
    """aioice's gathering, plus a passive TCP candidate per UDP host candidate's address when the
    transport's IceConfig has a `tcp_port` (sfu.ice_tcp)."""
    await _ORIGINAL_GATHER(self)
    port = _ice().tcp_port
    if port and not any(c.transport == "tcp" for c in self._local_candidates):
        hosts = [c.host for c in self._local_candidates
                 if c.type == "host" and c.component == 1 and c.transport == "udp"]
        self._local_candidates += await ice_tcp.add_candidates(self, hosts, port)


async def _close_with_tcp(self: Any) -> None:
    ice_tcp.forget(self)  # (its TCP streams are not among aioice's own protocols)
    await _ORIGINAL_CLOSE(self)


# ICE restart (RFC 8445 §9) on aioice, which has none: the same Connection, with its local candidates
# and sockets, gets new credentials and an empty check list, and connect() runs again. Until the
# restart nominates a pair, the previous one stays nominated: what is sent goes there, as the RFC
# asks, and receiving goes on (aioice's recv() refuses to run with no nominated pair, which would end
# aiortc's DTLS receive loop). Only the check list does not count it as done.
def _complete_unless_restarting(self: Any) -> bool:
    previous = getattr(self, "_basement_previous", None)
    if previous and any(self._nominated.get(c) is p for c, p in previous.items()):
        return False
    return bool(_ORIGINAL_MAYBE_COMPLETE(self))


def _check_complete_noting_nomination(self: Any, pair: Any) -> None:
    before = self._nominated.get(pair.component)
    _ORIGINAL_CHECK_COMPLETE(self, pair)
    after = self._nominated.get(pair.component)
    if after is not None and after is not before:
        getattr(self, "_basement_previous", {}).pop(pair.component, None)
        on_nominated = getattr(self, "_basement_on_nominated", None)
        if on_nominated is not None:
            on_nominated(after)


# How long a restart may go without nominating a pair. Meanwhile the previous pair is used with no
# consent checks (aioice runs them only once connect() succeeds): past this, as long as consent
# lasts without an answered check (sfu.consent), the connection is closed, as when consent expires
# (RFC 7675: never keep sending where nobody agreed to receive).
RESTART_TIMEOUT_S = 30.0


def _restart_expired(connection: Any, generation: int) -> None:
    if getattr(connection, "_basement_restarts", 0) != generation or connection._closing:
        return  # restarted again since, or closed
    if getattr(connection, "_basement_previous", None):
        log.info("ICE restart found no path in %.0f s: closing the connection", RESTART_TIMEOUT_S)
        asyncio.ensure_future(connection.close())


def restart_ice_credentials(connection: Any) -> None:
    """Give an aioice Connection new local ICE credentials and a fresh check list, keeping its
    candidates, sockets and (until the restart nominates others) its nominated pairs; connect() may
    then run again with the peer's new credentials. Single-port and ICE-TCP registrations follow the
    ufrag."""
    if connection._query_consent_task is not None:
        connection._query_consent_task.cancel()
        connection._query_consent_task = None
    for pair in connection._check_list:
        if pair.task is not None:
            pair.task.cancel()
    old_ufrag = connection.local_username
    connection._local_username = aioice.utils.random_string(4)
    connection._local_password = aioice.utils.random_string(22)
    connection._basement_previous = dict(connection._nominated)
    connection._nominating = set()
    connection._check_list = []
    connection._check_list_done = False
    connection._check_list_state = asyncio.Queue()
    connection._early_checks.clear()
    connection._early_checks_done = False
    connection._remote_candidates = []
    connection._remote_candidates_end = False
    connection.remote_username = connection.remote_password = None
    for protocol in connection._protocols:
        endpoint = getattr(protocol, "transport", None)
        if isinstance(endpoint, udp_mux.MuxEndpoint):
            endpoint.mux.rekey(endpoint, connection.local_username, connection.local_password)
    ice_tcp.rekey(connection, old_ufrag)
    generation = connection._basement_restarts = getattr(connection, "_basement_restarts", 0) + 1
    asyncio.get_running_loop().call_later(RESTART_TIMEOUT_S, _restart_expired, connection, generation)


class CandidateRefused(Exception):
    """A trickled remote candidate the SFU will not use; `code` is `candidate_limit` or `candidate_refused`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# Set while a PeerTransport applies a remote description or a candidate. aiortc creates the aioice
# connections inside setRemoteDescription and adds the SDP's candidates right away, so there is no
# moment to hook the instances first; a connection adopts the screen of the first call that sees it.
# Connections made outside a PeerTransport (test clients, bots on plain aiortc) are never screened.
_current_screen: contextvars.ContextVar[CandidateScreen | None] = contextvars.ContextVar(
    "basement_candidates", default=None)


def _screen_of(connection: Any) -> CandidateScreen | None:
    screen = getattr(connection, "_basement_screen", None)
    if screen is None:
        screen = _current_screen.get()
        if screen is not None:
            connection._basement_screen = screen
    return screen


def _refuse(screen: CandidateScreen, reason: str) -> None:
    screen.refused += 1
    STATS.drop(reason)


def _key(host: str, port: int, protocol: str) -> tuple[str, int, str]:
    return (host, port, protocol.lower())


async def _screened_add_remote_candidate(self: Any, remote_candidate: Any) -> None:
    screen = _screen_of(self)
    if screen is not None and remote_candidate is not None and not self._remote_candidates_end:
        key = _key(remote_candidate.host, remote_candidate.port, remote_candidate.transport)
        if key not in screen.seen:
            if screen.over_limit():
                return _refuse(screen, "candidate_limit")
            # an mDNS name is checked once resolved (below); its query counts against the cap here
            if not aioice.mdns.is_mdns_hostname(remote_candidate.host) and screen.policy.refusal(remote_candidate.host):
                return _refuse(screen, "candidate_refused")
            screen.seen.add(key)
    await _ORIGINAL_ADD_REMOTE_CANDIDATE(self, remote_candidate)


def _screened_add_resolved_candidate(self: Any, remote_candidate: Any, network_host: str) -> None:
    screen = getattr(self, "_basement_screen", None)
    if screen is not None and screen.policy.refusal(network_host):
        return _refuse(screen, "candidate_refused")
    _ORIGINAL_ADD_RESOLVED_CANDIDATE(self, remote_candidate, network_host)


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _ice().addresses
    if addresses is None:
        return _ORIGINAL_GET_HOST_ADDRESSES(use_ipv4, use_ipv6)
    return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


class _LoopWithPortRange:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, factory: Any, local_addr: Any = None, **kw: Any) -> Any:
        # aioice's host candidates: on the native path a socket of our own (sfu.media_socket), read
        # with recvmmsg; any other endpoint (TURN's, a remote address) stays the event loop's
        ice = _ice()
        if ice.udp_port and local_addr is not None and not kw and local_addr[1] == 0:
            # single-port mode: this transport's share of the port's one socket (sfu.udp_mux)
            mux = udp_mux.mux_for(self._loop, local_addr[0], ice.udp_port, _socket_type)
            protocol = factory()
            return mux.endpoint(protocol), protocol
        own = _socket_type is not None and local_addr is not None and not kw
        port_range = ice.port_range
        if local_addr is None or (not own and (port_range is None or local_addr[1] != 0)):
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kw)
        host, port = local_addr[0], local_addr[1]
        lo, hi = port_range or (port, port)
        explicit = port_range is None or port != 0
        if explicit:
            ports = [port]
        else:
            ports = list(range(lo, hi + 1))
            random.shuffle(ports)
        for p in ports:
            try:
                if own:
                    return media_socket.open_endpoint(self._loop, factory, host, p, _socket_type)
                return await self._loop.create_datagram_endpoint(factory, local_addr=(host, p), **kw)
            except OSError:
                if explicit:
                    raise
                continue
        raise OSError(f"no free UDP port in {lo}-{hi} on {host}")


# aioice's connect() paces its checks: start one, sleep 20 ms (RFC 8445's Ta), repeat until the
# check list is done, and only then returns. On a connection whose one check succeeds in a
# millisecond, the sleep is what the connection waits for: 10-20 ms more before DTLS may start, on
# every join. `_paced_check` notes which connection the next sleep paces, and that sleep ends early
# once the connection's check list has completed; checks are still started no faster than every
# 20 ms. A check list that failed still waits out the sleep, as before: aioice declares failure as
# soon as every pair it knows has failed, but a controlled agent may yet be nominated on a
# peer-reflexive pair by the controlling side's checks, and aiortc starts DTLS even after a failed
# connect(), so those 20 ms are what lets such a connection (the SFU behind a 1:1 NAT) work.
_pacing: contextvars.ContextVar[Any] = contextvars.ContextVar("basement_ice_pacing", default=None)


def _paced_check(self: Any) -> bool:
    more = _ORIGINAL_CHECK_PERIODIC(self)
    _pacing.set(self if more else None)
    return more


async def _check_pacing_sleep(delay: float, result: Any = None) -> Any:
    connection = _pacing.get()
    if connection is None:
        return await asyncio.sleep(delay, result)
    _pacing.set(None)
    loop = asyncio.get_running_loop()
    end = loop.time() + delay
    # the check list's outcome: connect() reads this queue (its only reader) right after this sleep,
    # so an outcome taken here is put back for it
    state = connection._check_list_state
    if state.empty():
        waiter = asyncio.ensure_future(state.get())
        try:
            await asyncio.wait((waiter,), timeout=delay)
        finally:
            if waiter.done() and not waiter.cancelled():
                state.put_nowait(waiter.result())
            else:
                waiter.cancel()
    outcome = None
    if not state.empty():
        outcome = state.get_nowait()
        state.put_nowait(outcome)
    if outcome != aioice.ice.ICE_COMPLETED:
        await asyncio.sleep(max(0.0, end - loop.time()))
    return result


class _AsyncioWithPortRange(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def get_running_loop() -> Any:
        return _LoopWithPortRange(asyncio.get_running_loop())

    sleep = staticmethod(_check_pacing_sleep)


_ICE_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)
_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$", re.MULTILINE)


def advertise(sdp: str, public_ip: str) -> str:
    """Rewrite host candidates to the public IP, when one is configured."""
    if not public_ip:
        return sdp
    return _CANDIDATE.sub(lambda m: m.group(1) + public_ip + m.group(3), sdp)


@dataclass(slots=True)
class SendSlot:
    """One outgoing m-line of a subscribe transport: where a DownTrack writes."""

    transceiver: Any
    kind: str
    ssrc: int
    rtx_ssrc: int
    cname: str = ""
    mid: str = ""
    pt: int = 0
    rtx_pt: int = 0
    ext_ids: dict[str, int] | None = None  # uri -> id negotiated on this m-line
    active: bool = False  # sending negotiated and DTLS up
    codec_name: str = ""
    on_active: Callable[[], None] | None = None
    downtrack: Any = None

    def set_msid(self, stream_id: str, track_id: str) -> None:
        self.transceiver.sender._stream_id = stream_id
        self.transceiver.sender._track_id = track_id


@dataclass(slots=True)
class RecvSlot:
    """One incoming m-line of a publish transport, as negotiated."""

    mid: str
    kind: str
    codecs: dict[int, RTCRtpCodecParameters]  # payload type -> codec (RTX included)
    ext_ids: dict[int, str]  # id -> uri, as the publisher numbers them
    rtcp_ssrc: int  # our SSRC as the sender of feedback for this m-line


@dataclass(slots=True)
class Remb:
    """A decoded REMB (PSFB/APP): aiortc parses only its envelope, so PeerTransport decodes and
    checks the FCI at the parse boundary and hands this on instead of the raw packet."""

    ssrc: int
    bitrate: int
    ssrcs: list[int]


RtpHandler = Callable[[bytes, float], None]
RtcpHandler = Callable[[list[Any]], None]


class _SharedCertificate:
    """Stands in for aiortc's RTCCertificate while a PeerTransport's RTCPeerConnection is made: one
    DTLS certificate for every connection of the process, as Janus and mediasoup have, renewed
    daily (aiortc's are valid for 30 days). A peer authenticates it by the fingerprint in the SDP,
    which is what binds a connection to its signalling, not the key's freshness."""

    LIFETIME_S = 24 * 3600.0
    _current: tuple[float, rtcdtlstransport.RTCCertificate] | None = None

    @classmethod
    def generateCertificate(cls) -> rtcdtlstransport.RTCCertificate:  # noqa: N802 (aiortc's name)
        now = time.monotonic()
        if cls._current is None or now - cls._current[0] > cls.LIFETIME_S:
            fresh = rtcdtlstransport.RTCCertificate.generateCertificate()
            cls._current = (now, _CertificateOnce(key=fresh._key, cert=fresh._cert))
        return cls._current[1]


class _CertificateOnce(rtcdtlstransport.RTCCertificate):
    """The shared certificate, whose per-connection work aiortc would redo on every join: three
    digests of the certificate for the SDP fingerprints, and an OpenSSL context loading the key
    (~7 % of the SFU's samples while 100 subscribers joined). Both depend on the certificate only
    (and the context on the SRTP profiles), so each is made once; every DTLS connection is its own
    `SSL.Connection` on the shared context, as OpenSSL intends."""

    def __init__(self, key: Any, cert: Any) -> None:
        super().__init__(key=key, cert=cert)
        self._fingerprints: list[Any] | None = None
        self._contexts: dict[tuple[bytes, ...], Any] = {}

    def getFingerprints(self) -> list[Any]:  # noqa: N802 (aiortc's name)
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return [copy.copy(f) for f in self._fingerprints]  # aiortc's callers own what they get

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> Any:
        key = tuple(p.openssl_profile for p in srtp_profiles)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = super()._create_ssl_context(srtp_profiles)
        return ctx


# What one SCTP association may make the SFU hold for a peer. aiortc's receive side trusts its
# peer: it stores every DATA chunk whatever the receive window it advertised (RFC 9260 6.2 lets a
# receiver drop those), keeps out-of-order TSNs and duplicates in lists that only the peer's good
# behaviour empties (and sorts the out-of-order set once per chunk), makes an inbound stream for
# any of 65,535 stream ids, and asserts on a repeated DCEP OPEN. A data channel client needs two
# streams and well under a window of chunks.
SCTP_MAX_OVERRUN = 64 * 1024  # bytes held beyond the advertised receive window (1 MiB)
SCTP_MAX_HELD_CHUNKS = 2048  # chunks held out of order or waiting for the rest of their message
SCTP_MAX_STREAMS = 64  # distinct stream ids a peer sends on, and data channels it has open or closing
SCTP_MAX_DUPLICATES = 64  # duplicate TSNs reported in one SACK
# A SACK's gap blocks: aiortc walks every TSN each one spans (up to 65,535), whatever it has in
# flight; the SFU never has more than a few thousand chunks out (its data is chat)
SCTP_MAX_GAP_SPAN = 4096


# chunks whose body aiortc walks as RFC 9260 3.2.1 parameters (INIT, INIT ACK, HEARTBEAT, HEARTBEAT
# ACK, ABORT, ERROR, RE-CONFIG), and where they start in it (INIT's and INIT ACK's after 16 bytes)
_SCTP_PARAMS_AT = {1: 16, 2: 16, 4: 0, 5: 0, 6: 0, 9: 0, 130: 0}


def sctp_packet_problem(data: bytes) -> str:
    """What in one SCTP packet would make aiortc's parser loop forever, or "".

    aiortc's `decode_params` advances by each parameter's length: a length of 0 never moves on, and
    the event loop (the whole process) spins on that one packet.
    """
    pos, end = 12, len(data)
    while pos <= end - 4:
        ctype = data[pos]
        clen = (data[pos + 2] << 8) | data[pos + 3]
        if clen < 4 or pos + clen > end:
            return ""  # aiortc refuses the packet itself (ValueError)
        if ctype == 0 and clen <= 16:
            # RFC 9260 6.2: a DATA chunk without user data MUST be answered with ABORT (aiortc would
            # keep it, and zero-length chunks do not lower the receive window that bounds the rest)
            return "a DATA chunk with no user data"
        if ctype == 3 and clen >= 16:  # SACK: what aiortc's gap walk would cost
            gaps = (data[pos + 12] << 8) | data[pos + 13]
            span = 0
            for g in range(min(gaps, (clen - 16) // 4)):
                at = pos + 16 + 4 * g
                first, last = (data[at] << 8) | data[at + 1], (data[at + 2] << 8) | data[at + 3]
                span += max(0, last - first + 1)
                if span > SCTP_MAX_GAP_SPAN:
                    return f"a SACK whose gap blocks span more than {SCTP_MAX_GAP_SPAN} TSNs"
        start = _SCTP_PARAMS_AT.get(ctype)
        if start is not None:
            p, stop = pos + 4 + start, pos + clen
            while p <= stop - 4:
                plen = (data[p + 2] << 8) | data[p + 3]
                if plen < 4:
                    return f"an SCTP chunk of type {ctype} has a parameter of length {plen} (at least 4)"
                p += plen + (-plen % 4)
        pos += clen + (-clen % 4)
    return ""


def sctp_problem(sctp: Any, window: int) -> str:
    """Why an association must end (what the peer made it hold), or ""."""
    if len(sctp._sack_duplicates) > SCTP_MAX_DUPLICATES:
        del sctp._sack_duplicates[SCTP_MAX_DUPLICATES:]  # (informational in a SACK: keep the first)
    if sctp._advertised_rwnd < -SCTP_MAX_OVERRUN:
        return f"the peer sent {window - sctp._advertised_rwnd} bytes into a {window}-byte receive window"
    if len(sctp._sack_misordered) > SCTP_MAX_HELD_CHUNKS:
        return f"more than {SCTP_MAX_HELD_CHUNKS} chunks out of order"
    if len(sctp._inbound_streams) > SCTP_MAX_STREAMS:
        return f"data on more than {SCTP_MAX_STREAMS} SCTP streams"
    if len(sctp._data_channels) > SCTP_MAX_STREAMS:
        # (channels the SFU closed stay until the peer answers the stream reset)
        return f"more than {SCTP_MAX_STREAMS} data channels open or closing"
    held = sum(len(s.reassembly) for s in sctp._inbound_streams.values())  # (at most SCTP_MAX_STREAMS)
    if held > SCTP_MAX_HELD_CHUNKS:
        return f"more than {SCTP_MAX_HELD_CHUNKS} chunks held for messages not yet complete"
    return ""


def _mark_received(sctp: Any) -> Callable[[int], bool]:
    """aiortc's `_mark_received` (is this DATA chunk's TSN a duplicate?) without its per-chunk sort.

    aiortc adds the TSN to the out-of-order set, sorts the whole set to advance the cumulative TSN,
    and filters it twice: O(n log n) for every chunk, so a peer holding a few thousand TSNs out of
    order made each 1,500-byte packet cost ~0.1 s. Same state, same results: the cumulative TSN
    advances through consecutive held TSNs one set lookup at a time."""
    from aiortc.rtcsctptransport import tsn_plus_one
    from aiortc.utils import uint32_gt, uint32_gte

    def mark_received(tsn: int) -> bool:
        misordered = sctp._sack_misordered
        last = sctp._last_received_tsn
        if uint32_gte(last, tsn) or tsn in misordered:
            sctp._sack_duplicates.append(tsn)
            return True
        if tsn != tsn_plus_one(last):
            misordered.add(tsn)
        else:
            last = tsn
            following = tsn_plus_one(last)
            while following in misordered:
                misordered.discard(following)
                last, following = following, tsn_plus_one(following)
            sctp._last_received_tsn = last
        if sctp._sack_duplicates:  # (aiortc keeps only those above the cumulative TSN; at most a packet's)
            sctp._sack_duplicates = [x for x in sctp._sack_duplicates if uint32_gt(x, last)]
        return False

    return mark_received


def guard_sctp(sctp: Any) -> None:
    """Bound what a peer's SCTP packets can make aiortc hold, and contain its errors.

    `_handle_data` (one SCTP packet out of DTLS) is wrapped on the instance. A packet that would make
    aiortc's parser spin (`sctp_packet_problem`), makes aiortc raise, or leaves it holding more than
    the limits above ends the association (ABORT):
    the peer's data channels close, counted as `sctp_refused` and logged once; its media, on the
    same DTLS transport, goes on. Unguarded, the exception would end aiortc's DTLS receive loop,
    taking the media with it.
    """
    if getattr(sctp, "_basement_guarded", False):
        return
    sctp._basement_guarded = True
    sctp._mark_received = _mark_received(sctp)
    handle = sctp._handle_data
    window = sctp._advertised_rwnd

    async def guarded(data: bytes) -> None:
        problem = sctp_packet_problem(data)
        if not problem:
            try:
                await handle(data)
            except Exception as e:
                problem = f"{type(e).__name__} in the SCTP stack" + (f": {str(e)[:80]}" if str(e) else "")
            else:
                problem = sctp_problem(sctp, window)
        if problem:
            STATS.drop("sctp_refused")
            log.info("data channels closed (SCTP ABORT): %s", problem)
            try:
                await sctp.stop()  # ABORT; no packet of this association reaches aiortc after it
            except Exception:
                log.debug("stopping the SCTP association failed", exc_info=True)

    sctp._handle_data = guarded


def _split_transport_feedback(data: bytes) -> tuple[list[bytes], bytes]:
    """A compound RTCP packet's transport-wide feedback packets (raw, in order) and the rest of it.

    aiortc's parser would read a feedback as a NACK, and refuses the whole compound when one is
    padded (libwebrtc pads them to a word with the P bit: aiortc strips the padding, then finds a
    payload that is not whole words). A header that runs past the end stops the split: the rest goes
    to aiortc's parser as it is, which refuses it."""
    if data.find(b"\xcd") < 0:  # (no RTPFB byte anywhere: the common case, no walk)
        return [], data
    feedback: list[bytes] = []
    rest = bytearray()
    pos, n = 0, len(data)
    while pos + 4 <= n:
        end = pos + (((data[pos + 2] << 8) | data[pos + 3]) + 1) * 4
        if end > n:
            break
        if data[pos + 1] == twcc.RTPFB and data[pos] & 0x1F == twcc.FMT_TWCC:
            feedback.append(data[pos:end])
        else:
            rest += data[pos:end]
        pos = end
    return feedback, bytes(rest + data[pos:])


class PeerTransport:
    """One peer connection: media in (publish) or media out (subscribe), never decoded."""

    def __init__(self, on_rtp: RtpHandler | None = None, on_rtcp: RtcpHandler | None = None,
                 ice: IceConfig | None = None) -> None:
        _install()
        self.ice = ice or _default_ice
        # aiortc makes a new ECDSA key and certificate for every RTCPeerConnection (~1 ms of every
        # join); every connection of this process shares one instead (_SharedCertificate). The swap
        # is synchronous: nothing else runs meanwhile.
        saved = _artc_pc.RTCCertificate
        _artc_pc.RTCCertificate = _SharedCertificate  # type: ignore[misc, assignment]
        try:
            # iceServers=[]: aiortc's default (None) asks stun.l.google.com, by DNS and a STUN
            # request, from every connection, and gathering waits up to 5 s for the answer. The SFU
            # gathers its configured addresses and advertises `ice_public_ip`; it contacts nobody
            # but its clients.
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        finally:
            _artc_pc.RTCCertificate = saved  # type: ignore[misc]
        self.on_rtp = on_rtp
        self.on_rtcp = on_rtcp
        self.rtcp_dropped = 0
        self.candidates = CandidateScreen(self.ice.candidate_policy())
        self.send_failures = 0
        self._dtls: Any = None
        self._send_to: Callable[[bytes, bool], Any] | None = None
        # the native send side (sfu._native.Egress), once the path is up on the native data path;
        # read per packet by the native fan-out (None: it calls send_rtp instead)
        self.egress: Any = None
        # transport-wide congestion control on a subscribe transport: what is stamped (and, on the
        # Python path, the numbering and send history; the Egress keeps its own), and the downlink
        # estimate made from the subscriber's feedback (None before the first feedback)
        self.sequence = TransportSequence()
        # how long a lossy subscriber's video is held for its retransmissions (stamped like `sequence`)
        self.playout_delay = PlayoutDelay()
        # a burst of video above pacing_factor x the downlink estimate waits (in the Egress, or here)
        self.pacing = Pacing()
        self.estimator: SendSideEstimator | None = None
        self._feedback_last: int | None = None  # the newest transport sequence number fed to it
        self.prober = Prober(self.send_rtp)  # padding that tests the downlink (started by the LayerSelector)
        # the native receive side (sfu.native_receive), once DTLS is up on the native data path
        self.native_receive: NativeReceive | None = None
        self._remote: Any = None
        # ICE restart: the next offer we make carries new credentials (a subscribe connection the
        # client asked to restart); `_restart_pending`: ours are new, the peer's are still to come
        self.want_ice_restart = False
        self._offer_allows_mixed = False  # the last applied offer had a=extmap-allow-mixed
        self._restart_pending = False
        self.ice_restarts = 0
        self._loop = asyncio.get_event_loop()
        self.closed = False
        self._connecting: set[asyncio.Task[None]] = set()
        self._guard_connect()

    # --- state -------------------------------------------------------------------------------
    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    @property
    def ended(self) -> bool:
        """True once this connection can carry nothing again: closed by us, by the peer (DTLS
        close_notify) or by aiortc after ICE consent expired, or failed. aiortc cannot restart ICE,
        so there is no way back; renegotiating it is pointless (and raises once it is closed)."""
        return self.closed or self.pc.signalingState == "closed" or self.pc.connectionState in ("failed", "closed")

    @property
    def end_cause(self) -> str:
        """Why an ended connection ended, for the books: `consent_expired` (no consent check answered
        for 30 s, sfu.consent), else its state (`failed`, `closed`)."""
        ice = self._ice_transport()
        if getattr(getattr(ice, "_connection", None), "_basement_consent_expired", False):
            return "consent_expired"
        return self.pc.connectionState

    def _guard_connect(self) -> None:
        """Make the connect step aiortc starts after each set*Description quiet when we close.

        aiortc runs it as a fire-and-forget task (`ensure_future(self.__connect())`): it walks the
        transceivers awaiting ICE, DTLS and each sender, and when the connection closes in between
        (a participant leaving while its subscribe connection renegotiates) the next
        `RTCIceTransport.start` raises InvalidStateError, which asyncio logs as "Task exception was
        never retrieved". Wrapped per instance (the name-mangled attribute is looked up on the
        instance first): the error is expected once the connection has ended, and `close()` waits
        for the task so nothing of this transport outlives it.
        """
        pc = self.pc
        connect = pc._RTCPeerConnection__connect  # type: ignore[attr-defined]
        connecting = self._connecting

        async def guarded_connect() -> None:
            task = asyncio.current_task()
            if task is not None:
                connecting.add(task)
            try:
                await connect()
            except InvalidStateError:
                if not self.ended:
                    raise
                log.debug("connection ended while connecting", exc_info=True)
            finally:
                if task is not None:
                    connecting.discard(task)

        pc._RTCPeerConnection__connect = guarded_connect  # type: ignore[attr-defined]

    def on_state(self, callback: Callable[[str], None]) -> None:
        @self.pc.on("connectionstatechange")
        def _changed() -> None:
            callback(self.pc.connectionState)

    def on_datachannel(self, callback: Callable[[Any], None]) -> None:
        """`callback(channel)` for each data channel the peer opens (in-band, RFC 8832)."""
        self.pc.on("datachannel", callback)

    @property
    def srtp_profile(self) -> str | None:
        ssl = getattr(self._dtls, "_ssl", None)
        if ssl is None:
            return None
        p = ssl.get_selected_srtp_profile()
        return p.decode() if p else None

    # --- publish side: the client offers, we answer ------------------------------------------
    async def accept_applied_offer(self) -> tuple[str, list[RecvSlot]]:
        """Answer a publisher's offer already applied with `pc.setRemoteDescription`.

        Hooks go in before the answer is set, so no packet can reach aiortc's own receive path.
        Returns the answer SDP and the negotiated m-lines.
        """
        slots = []
        setup = self._offered_setup()
        for t in self.pc.getTransceivers():
            # aiortc types mid as optional; applying the offer set it from the offer's a=mid
            # (sfu.sdp.check_offer requires one per m-line)
            assert t.mid is not None
            self._choose_dtls_role(t.receiver.transport, setup.get(t.mid))
            if t.direction != "recvonly":
                t.direction = "recvonly"  # we never send on a publish transport
            _neuter_receiver(t.receiver)
            _neuter_sender(t.sender, ended=lambda: self.ended)
            self._hook(t.receiver.transport)
            keep_dd_for_av1(t)
            drop_playout_delay(t)
            if not _transport_cc:
                drop_transport_cc(t)
            slots.append(
                RecvSlot(
                    mid=t.mid,
                    kind=t.kind,
                    codecs={c.payloadType: c for c in t._codecs if c.payloadType is not None},
                    # negotiated extensions always carry an id (the parameters type allows None)
                    ext_ids={e.id: e.uri for e in t._headerExtensions if e.id is not None},
                    rtcp_ssrc=t.sender._ssrc,
                )
            )
        sctp = self.pc.sctp
        if sctp is not None:  # the offer has data channels (on their own, or bundled with the media)
            self._choose_dtls_role(sctp.transport, setup.get(sctp.mid or ""))
            guard_sctp(sctp)
        token = _current_ice.set(self.ice)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        finally:
            _current_ice.reset(token)
        answer = self.pc.localDescription.sdp
        if self._offer_allows_mixed:
            answer = sdpmod.allow_mixed(answer)
        return advertise(answer, self.ice.public_ip), slots

    def _offered_setup(self) -> dict[str, str]:
        """mid -> the offer's DTLS role as aiortc parsed a=setup: `auto` (actpass), `client`
        (active) or `server` (passive). aiortc keeps only what it acted on, so parse again."""
        remote = self.pc.remoteDescription
        if remote is None:
            return {}
        try:
            media = asdp.SessionDescription.parse(remote.sdp).media
        except Exception:  # aiortc just applied this SDP: it parses; never fail an answer over it
            return {}
        return {m.rtp.muxId: m.dtls.role for m in media if m.dtls is not None and m.rtp.muxId}

    @staticmethod
    def _choose_dtls_role(dtls: Any, offered: str | None) -> None:
        """Answer a=setup:passive to an actpass offer: the client is then the DTLS client.

        aiortc would answer active, making the SFU the DTLS client, and aiortc as a client offers
        only ECDHE-ECDSA cipher suites: a peer whose certificate is RSA (GStreamer webrtcbin 1.22)
        then fails with "no shared cipher". As the server the SFU's ECDSA certificate picks the
        suite and the client's certificate may be of any type (it only signs). This is also the
        role browsers take as answerers. An offer that insists (active/passive) gets the
        complementary role from aiortc itself; a connected transport keeps the role it has.
        """
        if offered == "auto" and dtls._role == "auto" and dtls.state == "new":
            dtls._set_role("server")

    @staticmethod
    def accept_extension(sdp_offer_exts: dict[int, str], slot_transceiver: Any, uris: set[str]) -> None:
        """Keep extensions aiortc would drop from the answer (e.g. rid, repaired-rid)."""
        have = {e.uri for e in slot_transceiver._headerExtensions}
        for xid, uri in sdp_offer_exts.items():
            if uri in uris and uri not in have:
                slot_transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=xid, uri=uri))

    # --- subscribe side: we offer, the client answers ----------------------------------------
    def add_slot(self, kind: str, codec_mime: str | None = None) -> SendSlot:
        """A new sendonly m-line with no track: nothing is ever encoded for it."""
        token = _no_receive_estimator.set(True)  # a slot's receiver never runs (_neuter_receiver)
        try:
            t = self.pc.addTransceiver(kind, direction="sendonly")
        finally:
            _no_receive_estimator.reset(token)
        if codec_mime:
            caps = RTCRtpSender.getCapabilities(kind).codecs
            prefs = [c for c in caps if c.mimeType.lower() in (codec_mime.lower(), f"{kind}/rtx")]
            if prefs:
                t.setCodecPreferences(prefs)
        _neuter_receiver(t.receiver)
        slot = SendSlot(transceiver=t, kind=kind, ssrc=t.sender._ssrc, rtx_ssrc=t.sender._rtx_ssrc)
        _neuter_sender(t.sender, on_start=lambda params: self._slot_started(slot, params), ended=lambda: self.ended)
        self._hook(t.receiver.transport)
        return slot

    def set_slot_direction(self, slot: SendSlot, direction: str) -> None:
        slot.transceiver.direction = direction

    # --- ICE restart (RFC 8445 §9; JSEP: new ice-ufrag/ice-pwd in an offer) ---------------------
    def _ice_transport(self) -> Any:
        for t in self.pc.getTransceivers():
            return t.receiver.transport.transport
        sctp = self.pc.sctp
        return sctp.transport.transport if sctp is not None else None

    def _restart_local(self) -> bool:
        """New local ICE credentials and an empty check list on the (bundled) connection, whose
        previous pair keeps carrying what is sent until the restart nominates one. False if there
        is nothing to restart: ICE has not finished its first run, or the connection ended.

        A restart may supersede one still checking: a client whose path keeps changing (or whose
        first restart is slow on a loaded machine) offers again before the previous restart found
        a pair, and from then on checks only with its newest credentials, so a server that stayed
        on the previous ones would never connect again."""
        ice = self._ice_transport()
        if ice is None or self.ended or self._restart_pending:
            return False
        connection = ice._connection
        if ice.state == "checking" and getattr(connection, "_basement_restarts", 0) > 0:
            self._stop_superseded_run(ice)
        elif ice.state != "completed":
            return False
        restart_ice_credentials(connection)
        connection._basement_on_nominated = self._nominated_again
        self._restart_pending = True
        self.ice_restarts += 1
        return True

    def _stop_superseded_run(self, ice: Any) -> None:
        """The previous restart's connect() still paces checks and waits on its check list: it must
        not go on over the new one (nor report the superseded run as failed). Its start event is set
        as if it had ended: aiortc's connect steps started until the peer's new credentials arrive
        (our own offer's, for one) wait on it, and would wait forever."""
        for task in self._connecting:
            task.cancel()
        started = getattr(ice, "_RTCIceTransport__start", None)
        if started is not None:
            started.set()

    def _restart_remote(self) -> None:
        """The peer's new credentials come with the description being applied: let aiortc's connect
        step run ICE again with them (it runs it once per transport otherwise), and screen the new
        generation's candidates afresh."""
        ice = self._ice_transport()
        self._restart_pending = False
        if ice is None:
            return
        ice._RTCIceTransport__start = None
        monitor = ice._RTCIceTransport__monitor_task
        if monitor is not None:
            monitor.cancel()
            ice._RTCIceTransport__monitor_task = None
        ice._connection._event_waiter = None  # (the cancelled monitor's; the new one waits anew)
        ice.iceGatherer._remote_candidates_end = False
        self.candidates = CandidateScreen(self.ice.candidate_policy())
        ice._connection._basement_screen = self.candidates

    def _remote_ufrag_changed(self, sdp: str) -> bool:
        ice = self._ice_transport()
        current = getattr(getattr(ice, "_connection", None), "remote_username", None)
        match = _ICE_UFRAG.search(sdp)
        return current is not None and match is not None and match.group(1) != current

    def _nominated_again(self, pair: Any) -> None:
        """The restart nominated a pair: media goes there from now on (the native egress moves with
        its SRTP state; see `_resolve_send`)."""
        self._send_to = None
        if self.egress is not None and not self.closed:
            self._send_to = self._resolve_send()

    async def create_offer(self) -> str:
        if self.want_ice_restart:
            self.want_ice_restart = False
            self._restart_local()
        token = _current_ice.set(self.ice)
        try:
            await self.pc.setLocalDescription(await self.pc.createOffer())
        finally:
            _current_ice.reset(token)
        for t in self.pc.getTransceivers():
            # a recycled m-line keeps its transport; hook any new one
            self._hook(t.receiver.transport)
        # forwarded packets may come in the two-byte extension form (AV1 key frames' dependency
        # descriptor): every browser accepts it when offered so
        return advertise(sdpmod.allow_mixed(self.pc.localDescription.sdp), self.ice.public_ip)

    async def apply_offer(self, sdp: str) -> None:
        """Apply a client's offer; its a=candidate lines are screened like trickled ones."""
        if self._remote_ufrag_changed(sdp) and self._restart_local():  # the client restarted ICE
            self._restart_remote()
        # (aiortc's remoteDescription is its own rewrite of the SDP, without what it does not know)
        self._offer_allows_mixed = sdpmod.allows_mixed(sdp)
        token = _current_screen.set(self.candidates)
        # the receivers this makes are neutered by accept_applied_offer before they could run
        no_estimator = _no_receive_estimator.set(True)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        finally:
            _no_receive_estimator.reset(no_estimator)
            _current_screen.reset(token)

    async def accept_answer(self, sdp: str) -> None:
        if self._restart_pending:  # the answer to our restart offer: the peer's new credentials
            self._restart_remote()
        token = _current_screen.set(self.candidates)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        finally:
            _current_screen.reset(token)

    @property
    def signaling_state(self) -> str:
        return self.pc.signalingState

    def _slot_started(self, slot: SendSlot, params: Any) -> None:
        slot.mid = params.muxId or slot.transceiver.mid or ""
        slot.cname = params.rtcp.cname or ""
        slot.ext_ids = {e.uri: e.id for e in params.headerExtensions}
        xid = slot.ext_ids.get(URI_TWCC)
        if xid is not None and 1 <= xid <= 14:
            # (one id per transport: a client answering another id on a later m-line moves them all)
            self.sequence.xid = xid
            self.sequence.ssrcs.update(s for s in (slot.ssrc, slot.rtx_ssrc) if s)
            if self.egress is not None:
                self._stamp_on(self.egress, fresh=False)
        xid = slot.ext_ids.get(URI_PLAYOUT_DELAY)
        if xid is not None and 1 <= xid <= 14 and slot.kind == "video" and slot.ssrc:
            self.playout_delay.negotiated(xid, slot.ssrc)
        if slot.kind == "video" and slot.ssrc:
            self.pacing.negotiated(slot.ssrc)
        media = params.codecs[0]
        slot.pt = media.payloadType
        slot.rtx_pt = 0
        for c in params.codecs:
            if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == media.payloadType:
                slot.rtx_pt = c.payloadType
        slot.active = True
        if slot.on_active is not None:
            slot.on_active()

    def reactivate(self, slot: SendSlot) -> None:
        """A recycled m-line is sendonly again after renegotiation: its sender never stopped."""
        if not slot.active and getattr(slot.transceiver.sender, "_basement_started", False):
            if slot.transceiver.currentDirection in ("sendonly", "sendrecv"):
                slot.active = True
                if slot.on_active is not None:
                    slot.on_active()

    async def add_ice_candidate(self, candidate: Any) -> None:
        """Add a trickled candidate; raises CandidateRefused (and counts a drop) if it is over the
        cap or outside the allowed ranges. mDNS names are checked once resolved (a counted drop)."""
        screen = self.candidates
        key = _key(candidate.ip, candidate.port, candidate.protocol)
        if key in screen.seen:
            return  # already known: aiortc would still append it to the remote description, again and again
        if screen.over_limit():
            _refuse(screen, "candidate_limit")
            raise CandidateRefused("candidate_limit", f"this connection already has "
                                   f"{screen.policy.max_remote} remote candidates (ice_max_remote_candidates)")
        if not aioice.mdns.is_mdns_hostname(candidate.ip):
            reason = screen.policy.refusal(candidate.ip)
            if reason:
                _refuse(screen, "candidate_refused")
                raise CandidateRefused("candidate_refused", f"{reason} (ice_allowed_ranges)")
        # counted here: after end-of-candidates aiortc drops a trickled candidate before aioice sees
        # it, but still keeps it in the remote description
        screen.seen.add(key)
        token = _current_screen.set(screen)
        try:
            await self.pc.addIceCandidate(candidate)
        finally:
            _current_screen.reset(token)

    # --- the hooks ---------------------------------------------------------------------------
    def _hook(self, dtls: Any) -> None:
        if getattr(dtls, "_basement_hooked", False):
            return
        dtls._basement_hooked = True
        if _srtp_profiles is not None:
            dtls._srtp_profiles = list(_srtp_profiles)  # read when the DTLS handshake starts
        self._dtls = dtls
        on_rtp = self.on_rtp
        on_rtcp = self._rtcp_in
        loop_time = self._loop.time

        def deliver_rtp(data: bytes) -> None:
            # an exception escaping here would end the transport's receive loop (aiortc's or ours)
            if on_rtp is not None:
                try:
                    on_rtp(data, loop_time())
                except Exception:
                    self._internal_error("RTP")

        def deliver_rtcp(data: bytes) -> None:
            try:
                on_rtcp(data)
            except Exception:
                self._internal_error("RTCP")

        async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
            deliver_rtp(data)

        async def handle_rtcp(data: bytes) -> None:
            deliver_rtcp(data)

        dtls._handle_rtp_data = handle_rtp
        dtls._handle_rtcp_data = handle_rtcp
        if _receive_type is not None and hasattr(dtls, "on"):  # (unit tests hook bare stand-ins)
            receive_type, receive_error = _receive_type, _receive_error

            @dtls.on("statechange")
            def _dtls_state() -> None:
                if dtls.state == "connected" and self.native_receive is None and not self.closed:
                    keys = srtp_keys(dtls)
                    if keys is not None:  # no SRTP profile negotiated: aiortc's path (it drops media too)
                        self.native_receive = NativeReceive(dtls.transport._connection,
                                                            receive_type(keys[0], keys[2], True),
                                                            receive_error, deliver_rtp, deliver_rtcp)

    def _internal_error(self, what: str) -> None:
        STATS.drop("internal_error")
        if STATS.dropped["internal_error"] <= 10:  # enough to diagnose, not enough to flood
            log.exception("dropped an %s packet after an internal error", what)

    def _rtcp_in(self, data: bytes) -> None:
        """The RTCP parse boundary: whatever the bytes, handlers get well-formed packets only."""
        feedback, data = _split_transport_feedback(data)
        try:
            # any: entries become None (dropped) or Remb (parsed REMB) below
            packets: list[Any] = artp.RtcpPacket.parse(data) if data else []
        except Exception:  # untrusted bytes: any parser failure (ValueError, struct.error, ...) is a drop
            self._rtcp_malformed()
            return
        for raw in feedback:
            try:
                packets.append(twcc.parse(raw))
            except twcc.FeedbackError:
                self._rtcp_malformed()
        for i, p in enumerate(packets):
            if isinstance(p, artp.RtcpPsfbPacket) and p.fmt == artp.RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = artp.unpack_remb_fci(p.fci)
                except (ValueError, struct_error):  # a truncated or foreign APP message: drop just it
                    self._rtcp_malformed()
                    packets[i] = None
                    continue
                packets[i] = Remb(p.ssrc, bitrate, ssrcs)
        packets = [p for p in packets if p is not None]
        if packets and self.on_rtcp is not None:
            self.on_rtcp(packets)

    def on_transport_feedback(self, fb: twcc.Feedback, now: float) -> float | None:
        """Feed the subscriber's transport-wide feedback to the estimator: the new downlink estimate,
        or None (nothing stamped here, or too little acknowledged yet). Each number counts once: a
        later feedback that repeats it (or reports it late) is not a second packet."""
        if not self.sequence.xid:
            STATS.drop("twcc_unexpected")  # feedback for numbers we never stamped
            return None
        estimator = self.estimator
        if estimator is None:
            estimator = self.estimator = SendSideEstimator()
        arrivals = dict(fb.received)
        last = self._feedback_last
        packets = []
        for k in range(fb.count):
            seq = (fb.base_seq + k) & 0xFFFF
            if last is not None and not 0 < ((seq - last) & 0xFFFF) < 0x8000:
                continue  # fed already (or from before what we keep)
            sent = self.sent_packet(seq)
            if sent is not None:
                packets.append((sent[0], sent[1], arrivals.get(seq)))
                self._feedback_last = seq
        if packets:
            estimator.on_packets(now, packets)
        estimate = estimator.estimate_bps
        if estimate is not None:
            self.pacing.on_estimate(estimate, now)
        return estimate

    def sent_packet(self, seq: int) -> tuple[float, int] | None:
        """(send time, bytes) of the packet this transport numbered `seq`, or None."""
        egress = self.egress
        return egress.sent_packet(seq) if egress is not None else self.sequence.sent_packet(seq)

    def _rtcp_malformed(self) -> None:
        self.rtcp_dropped += 1
        STATS.drop("rtcp_malformed")

    def _resolve_send(self) -> Callable[[bytes, bool], Any] | None:
        """The send function of the nominated pair once DTLS is up: native egress or aiortc's SRTP."""
        dtls = self._dtls
        if dtls is None or dtls.state != "connected":
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return None
        addr = pair.remote_addr
        if _egress_type is not None and not isinstance(pair.protocol.transport, ice_tcp.IceTcpStream):
            # (the native egress sends datagrams: a pair over ICE-TCP takes aiortc's SRTP and the
            # stream's framing below, every packet of the transport alike)
            keys = srtp_keys(dtls)
            sock = pair.protocol.transport.get_extra_info("socket")
            if keys is None or sock is None:
                return None
            egress = self.egress
            if egress is not None and not egress.closed:
                # the pair changed (an ICE restart): the same SRTP state, sent from and to the new one
                egress.retarget(sock.fileno(), addr)
            else:
                # every RTP and RTCP packet of this transport goes through it from now on: the SRTP
                # rollover and SRTCP index state of an SSRC must live in one place. (What the Python
                # path holds for pacing goes first, numbered in its sequence: the Egress numbers on.)
                self.pacing.flush()
                egress = self.egress = _egress_type(sock.fileno(), addr, keys[0], keys[1])
                self._stamp_on(egress, fresh=True)
                self.playout_delay.attach(egress)
                self.pacing.attach(egress)
            send_rtp, send_rtcp = egress.send_rtp, egress.send_rtcp

            def send_native(data: bytes, rtcp: bool = False) -> Any:
                return send_rtcp(data) if rtcp else send_rtp(data)

            return send_native

        sequence = self.sequence
        if self.egress is not None:
            # an ICE restart moved a native transport onto TCP: aiortc's SRTP session sends from now
            # on, and its SRTCP index starts over (the peer may take our first reports as replays).
            # What it holds for pacing goes first, where it was meant to.
            self.egress.set_pacing(0)
            sequence.next = self.egress.transport_seq_next
            self.egress.close()
            self.egress = None
            self.playout_delay.attach(None)
            self.pacing.attach(None)
        srtp = dtls._tx_srtp
        udp_send = pair.protocol.transport.sendto
        protect = srtp.protect
        protect_rtcp = srtp.protect_rtcp
        monotonic = time.monotonic
        stamp_delay = self.playout_delay.stamp
        pacing = self.pacing

        def send_now(data: bytes) -> None:
            data = stamp_delay(data)
            udp_send(protect(sequence.stamp(data, monotonic()) if sequence.xid else data), addr)

        pacing.send_now = send_now  # (what waits for the pacer goes to this pair from now on)

        def send(data: bytes, rtcp: bool = False) -> Any:
            if rtcp:
                udp_send(protect_rtcp(data), addr)
            elif pacing.pacer.rate > 0:
                pacing.send(data, monotonic())
            else:
                send_now(data)
            return True

        return send

    def _stamp_on(self, egress: Any, fresh: bool) -> None:
        """The native egress stamps what `sequence` says: a new one numbering on from the Python
        path's, one already stamping from its own next number."""
        sequence = self.sequence
        if not sequence.xid:
            return
        egress.set_transport_seq(sequence.xid, sequence.next if fresh else egress.transport_seq_next)
        for ssrc in sequence.ssrcs:
            egress.stamp_ssrc(ssrc)

    def send_rtp(self, data: bytes) -> bool:
        """Protect and send one RTP packet now. False (and counted) when the path is not up."""
        return self._send(data, False)

    def send_rtcp(self, packets: Iterable[Any]) -> bool:
        return self._send(b"".join(bytes(p) for p in packets), True)

    def _send(self, data: bytes, rtcp: bool) -> bool:
        send = self._send_to
        if send is None:
            send = self._send_to = self._resolve_send()
            if send is None:
                self.send_failures += 1
                return False
        try:
            if send(data, rtcp):
                return True
        except Exception:  # libsrtp refusal or a closed socket: drop this packet, re-resolve later
            self._send_to = None
        else:  # the native egress dropped it (socket buffer full, or closed)
            if self.egress is not None and self.egress.closed:
                self._send_to = None
        self.send_failures += 1
        return False

    # --- lifecycle ---------------------------------------------------------------------------
    def receivers_decoded_nothing(self) -> bool:
        """True if no aiortc decoder or encoder was ever started on this transport."""
        for t in self.pc.getTransceivers():
            if getattr(t.receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
                return False
            if getattr(t.sender, "_RTCRtpSender__encoder", None) is not None:
                return False
        return True

    async def close(self) -> None:
        """Close the connection and wait for aiortc's connect step, so nothing outlives it."""
        if self.closed:
            return
        self.closed = True
        self.prober.stop()
        self.pacing.close()
        self._send_to = None
        if self.egress is not None:
            self.egress.close()
        if self.native_receive is not None:
            self.native_receive.close()
        try:
            await self.pc.close()
        except Exception:  # closing is best effort: never let a half-dead peer block a leave
            log.debug("error closing peer connection", exc_info=True)
        if self._connecting:
            # each ends promptly now: every await in it returns or raises once the transports stopped
            await asyncio.gather(*self._connecting, return_exceptions=True)


# aiortc gives every video RTCRtpReceiver a RemoteBitrateEstimator: ~1,000 objects, 0.4 ms idle and
# several ms under load (the garbage collections it triggers), on every video m-line of every join.
# The receivers a PeerTransport makes never run (_neuter_receiver: the Ingress estimates natively),
# so while it makes them (a context variable: other connections' aiortc code, even interleaved
# across awaits, still gets aiortc's own) none is built; aiortc's receive path checks for None.
_no_receive_estimator: contextvars.ContextVar[bool] = contextvars.ContextVar("basement_no_receive_estimator",
                                                                            default=False)
_AiortcRemoteBitrateEstimator = _artc_receiver.RemoteBitrateEstimator


def _receive_estimator() -> Any:
    return None if _no_receive_estimator.get() else _AiortcRemoteBitrateEstimator()


def _neuter_receiver(receiver: Any) -> None:
    """Never start aiortc's receive path: no jitter buffer, no decoder thread, no RTCP loop."""

    async def receive(parameters: Any) -> None:
        return None

    receiver.receive = receive


def _neuter_sender(sender: Any, on_start: Callable[[Any], None] | None = None,
                   ended: Callable[[], bool] | None = None) -> None:
    """Keep the sender's negotiation role but stop it from encoding or sending RTCP itself.

    `RTCRtpSender.send()` schedules `_run_rtp`/`_run_rtcp`; stand-ins must set the private events
    `stop()` waits on, or closing the connection hangs. `ended`: true once the connection is
    closing; aiortc's connect task may reach `send()` after `close()` already stopped this sender,
    and a sender started then is never stopped (its task is destroyed pending at exit).
    """
    original_send = sender.send

    async def send(parameters: Any) -> None:
        if ended is not None and ended():
            return
        first = not getattr(sender, "_basement_started", False)
        await original_send(parameters)
        if first:
            sender._basement_started = True
            if on_start is not None:
                on_start(parameters)

    async def run_rtp(codec: Any) -> None:
        sender._RTCRtpSender__rtp_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        finally:
            sender._RTCRtpSender__rtp_exited.set()

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        finally:
            sender._RTCRtpSender__rtcp_exited.set()

    sender.send = send
    sender._run_rtp = run_rtp
    sender._run_rtcp = run_rtcp
