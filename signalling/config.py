"""One typed settings object for every Basement process.

Values come, in increasing priority, from the defaults below, `BASEMENT_<FIELD>` environment
variables, and CLI flags (`--field-name`). `docs/configuration.md` lists them all; a test keeps the
two in step.

Every setting belongs to one group (`metadata["group"]`, one of GROUPS), and every subcommand reads
the groups listed for it in SUBCOMMAND_GROUPS: it offers flags only for those, and `load` takes the
environment only for those (the others keep their defaults), so `basement sfu` neither offers
`--grant-ttl-s` nor fails on a `BASEMENT_CHAIN` meant for the signalling pods.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "BASEMENT_"

# Settings groups, in the order the docs and `--help` show them: name -> title.
GROUPS: dict[str, str] = {
    "logging": "logging",
    "http": "HTTP server (signalling, or the probes of `basement sfu`)",
    "tls": "TLS (HTTPS and WSS for the signalling server)",
    "metrics": "Prometheus metrics",
    "signalling": "WebSocket signalling and rooms",
    "media": "media plane (ICE, RTP, simulcast)",
    "workers": "media worker processes (`basement serve` and `basement sfu`)",
    "turn": "TURN servers handed to clients (TURN REST API credentials)",
    "access": "sign-in, grants, gates, admin API",
    "chain": "chain (the node and SessionLog)",
    "sessions": "session data (outbox and CID store)",
    "recording": "which sessions are recorded",
    "writer": "chain writer (summaries to SessionLog)",
    "redis": "Redis (cluster state, bus, outbox)",
    "cluster": "cluster membership",
    "node": "SFU media node of a cluster",
    "sip": "SIP dial-in (docs/sip.md)",
}

# What each subcommand reads (a nested one is named by its path, e.g. "sessions writer").
SUBCOMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "serve": ("logging", "http", "tls", "metrics", "signalling", "media", "workers", "turn", "access", "chain",
              "sessions", "recording", "writer", "redis", "sip"),
    "sfu": ("logging", "http", "metrics", "media", "workers", "redis", "cluster", "node", "recording"),
    "signal": ("logging", "http", "tls", "metrics", "signalling", "turn", "access", "chain", "sessions",
               "recording", "writer", "redis", "cluster"),
    "sessions list": ("logging", "chain", "sessions"),
    "sessions verify": ("logging", "chain", "sessions"),
    "sessions prove": ("logging", "chain", "sessions"),
    "sessions writer": ("logging", "chain", "sessions", "writer", "redis"),
    "bench": ("logging",),
}


# DTLS-SRTP profiles (RFC 5764 names as OpenSSL spells them) both data paths implement
SRTP_PROFILES = ("SRTP_AEAD_AES_256_GCM", "SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80")


# workers of one server process: far more than any machine's cores, few enough for one parent to watch
MAX_WORKERS = 256


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass
class Settings:
    # --- HTTP / WebSocket signalling ---
    host: str = field(default="127.0.0.1", metadata={"group": "http",
                                                     "help": "address the HTTP/WebSocket server binds"})
    port: int = field(default=8080, metadata={"group": "http", "help": "HTTP/WebSocket port (0 = any free port)"})
    tls: str = field(
        default="", metadata={"group": "tls",
                              "help": "'self-signed': serve HTTPS/WSS with a certificate made at start (LAN trials; "
                                      "its SHA-256 fingerprint is printed); empty: HTTPS only with tls_cert/tls_key"}
    )
    tls_cert: str = field(default="", metadata={"group": "tls",
                                                "help": "PEM certificate chain file: serve HTTPS/WSS (with tls_key)"})
    tls_key: str = field(default="", metadata={"group": "tls",
                                               "help": "PEM private key file of tls_cert (read once at start, never "
                                                       "logged)"})
    metrics_host: str = field(default="127.0.0.1", metadata={"group": "metrics",
                                                             "help": "address of the Prometheus endpoint"})
    metrics_port: int = field(default=9090, metadata={"group": "metrics",
                                                      "help": "Prometheus /metrics port (0 disables it)"})
    log_level: str = field(default="info", metadata={"group": "logging", "help": "debug, info, warning or error"})
    public_url: str = field(
        default="", metadata={"group": "signalling",
                              "help": "URL users open (for SIWE domain/URI); default http(s)://host:port"}
    )
    allowed_origins: list[str] = field(
        default_factory=list,
        metadata={"group": "signalling",
                  "help": "page origins besides the served one (public_url, or the Host asked for) that may "
                          "open /ws, e.g. https://app.example; '*' = any"},
    )
    allowed_hosts: list[str] = field(
        default_factory=list,
        metadata={"group": "signalling",
                  "help": "Host names served besides public_url's, host, localhost and IP literals "
                          "(refuses DNS rebinding); '*' = any"},
    )
    trusted_proxies: list[str] = field(
        default_factory=list,
        metadata={"group": "signalling",
                  "help": "addresses/CIDRs of reverse proxies whose X-Forwarded-For names the client address"},
    )
    ws_max_per_address: int = field(
        default=20, metadata={"group": "signalling",
                              "help": "concurrent WebSockets from one client address (0 = no limit)"}
    )
    ws_rate_per_s: float = field(
        default=20.0, metadata={"group": "signalling",
                                "help": "messages per second one WebSocket may send, sustained (0 = no limit)"}
    )
    ws_burst: int = field(default=100, metadata={"group": "signalling",
                                                 "help": "messages one WebSocket may send at once (bucket size)"})
    ws_rate_strikes: int = field(
        default=50, metadata={"group": "signalling",
                              "help": "messages refused in a row for rate after which the WebSocket is closed"}
    )
    ws_send_queue: int = field(
        default=1024, metadata={"group": "signalling",
                                "help": "messages queued for a client that does not read before it is disconnected"}
    )
    room_span_above: int = field(
        default=100, metadata={"group": "signalling",
                               "help": "a room's participants join its home media node (a worker of `serve "
                                       "--workers`, or a `basement sfu` with relay_host) until it holds this many "
                                       "of them (or is overloaded), then the least loaded one of its kind; the room "
                                       "then spans them, its tracks relayed between them (docs/cluster.md \"Rooms "
                                       "across workers\"); 0 = a room stays on one"}
    )
    client_ping_interval_s: float = field(
        default=15.0, metadata={"group": "signalling",
                                "help": "how often clients ping over their WebSocket (sent to them in `joined`): "
                                        "a path gone dark without a reset is noticed within this plus "
                                        "client_ping_timeout_s; lower it behind proxies with short idle timeouts"}
    )
    client_ping_timeout_s: float = field(
        default=5.0, metadata={"group": "signalling",
                               "help": "how long a client waits for the pong to its ping before it takes the "
                                       "socket for dead and resumes on a new one"}
    )
    resume_grace_s: float = field(
        default=20.0, metadata={"group": "signalling",
                                "help": "how long a participant whose WebSocket dropped (no close frame) stays in "
                                        "its room waiting for the client to resume (0 = it leaves at once)"}
    )

    # --- media plane ---
    ice_addresses: list[str] = field(
        default_factory=lambda: ["127.0.0.1"],
        metadata={"group": "media", "help": "local addresses ICE gathers host candidates on; 'auto' = every interface"},
    )
    public_ip: str = field(
        default="", metadata={"group": "media", "help": "address advertised in candidates (NAT 1:1, hostNetwork pods)"}
    )
    rtp_port_min: int = field(default=0, metadata={"group": "media", "help": "lowest UDP port for media (0 = any)"})
    rtp_port_max: int = field(default=0, metadata={"group": "media", "help": "highest UDP port for media (0 = any)"})
    ice_udp_port: int = field(
        default=0, metadata={"group": "media",
                             "help": "one UDP port for every participant's media (single-port mode: one socket, "
                                     "demultiplexed by ICE username, then by address); 0 = a port per connection "
                                     "(rtp_port_min/max)"}
    )
    ice_tcp_port: int = field(
        default=0, metadata={"group": "media",
                             "help": "also offer a passive ICE-TCP candidate on this TCP port (RFC 6544), for "
                                     "networks that block UDP; one port for every participant; 0 = UDP only"}
    )
    ice_allowed_ranges: list[str] = field(
        default_factory=lambda: ["auto"],
        metadata={"group": "media",
                  "help": "remote ICE candidates the SFU may check: CIDRs, and/or 'auto' = public addresses, "
                          "plus loopback/link-local/private ones only if the SFU gathers on such an address"},
    )
    ice_max_remote_candidates: int = field(
        default=32, metadata={"group": "media",
                              "help": "remote ICE candidates one peer connection accepts (SDP and trickled)"}
    )
    turn_urls: list[str] = field(
        default_factory=list,
        metadata={"group": "turn",
                  "help": "TURN (and STUN) servers handed to clients in joined.ice_servers, e.g. "
                          "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:443?transport=tcp"},
    )
    turn_secret: str = field(
        default="", metadata={"group": "turn", "secret": True,
                              "help": "the TURN server's shared secret (coturn static-auth-secret, the TURN REST "
                                      "API): each participant gets its own credentials from it"}
    )
    turn_credential_ttl_s: int = field(
        default=28800, metadata={"group": "turn",
                                 "help": "lifetime of a participant's TURN credentials; a TURN server refuses to "
                                         "refresh an allocation after it, so it bounds a relayed call's length"}
    )
    sip_port: int = field(
        default=0, metadata={"group": "sip",
                             "help": "UDP port of the SIP service (docs/sip.md): phones dial sip:<room>@host:port "
                                     "into a room that has someone in it or a config (0 = off)"}
    )
    sip_host: str = field(
        default="127.0.0.1", metadata={"group": "sip",
                                       "help": "address the SIP service and its calls' RTP listen on, and name in "
                                               "their SDP (an address, not a name)"}
    )
    sip_max_calls: int = field(
        default=16, metadata={"group": "sip",
                              "help": "calls at once; one more is answered 486 Busy Here (each call is a "
                                      "WebSocket from sip_host: at most ws_max_per_address)"}
    )
    sip_requests_per_s: float = field(
        default=20.0, metadata={"group": "sip",
                                "help": "SIP requests per second from one address (a burst of twice that); more "
                                        "are answered 503 with Retry-After, or dropped while over twice the rate"}
    )
    srtp_profiles: list[str] = field(
        default_factory=lambda: list(SRTP_PROFILES),
        metadata={"group": "media",
                  "help": "DTLS-SRTP profiles the SFU accepts, most preferred first (RFC 5764; GCM is RFC 7714)"},
    )
    transport_cc: bool = field(
        default=True,
        metadata={"group": "media",
                  "help": "transport-wide congestion control: offered to subscribers (the SFU estimates "
                          "each downlink from their feedback and probes before a layer goes up) and "
                          "accepted from publishers (the SFU reports what arrived, and their browsers "
                          "set their encoders from it); off, REMB both ways"},
    )
    playout_delay: bool = field(
        default=True,
        metadata={"group": "media",
                  "help": "offer subscribers the playout-delay header extension: one whose link keeps losing "
                          "packets has its video held 1.5 round trips + 30 ms for the retransmissions "
                          "(at most 400 ms); off, such a link loses frames instead of adding latency"},
    )
    pacing_factor: float = field(
        default=1.25,
        metadata={"group": "media",
                  "help": "a subscriber's video leaves at most at this many times its downlink estimate "
                          "(from transport-wide feedback): a key frame's burst waits in the SFU rather than "
                          "overflowing a shallow queue on the way, at the cost of its own latency; 0: no "
                          "pacing (libwebrtc paces at 2.5, which left the bursts measured in "
                          "docs/performance.md alone)"},
    )
    datapath: str = field(
        default="native",
        metadata={"group": "media",
                  "help": "who forwards packets: 'native' (the C extension: rewrite, SRTP, sendmmsg) or "
                          "'python' (the pure-Python twin)"},
    )
    udp_gso: bool = field(
        default=True,
        metadata={"group": "media",
                  "help": "datapath=native: a subscriber's equal-length datagrams of one received batch leave as "
                          "one segmented send (Linux UDP_SEGMENT); a kernel or device that refuses it gets "
                          "plain sends, counted in basement_udp_gso_refused_total"},
    )
    aes_ni: bool = field(
        default=True,
        metadata={"group": "media",
                  "help": "datapath=native: SRTP's AES-GCM and AES-CM run on the CPU's AES-NI and PCLMULQDQ "
                          "instructions (and VAES / VPCLMULQDQ) where it has them (false: on OpenSSL's EVP; the "
                          "same bytes, more CPU per packet)"},
    )
    retransmit_budget: float = field(
        default=0.5,
        metadata={"group": "media",
                  "help": "NACK answers: resent bytes per forwarded byte to a subscriber, per 1 s window"},
    )
    max_simulcast_layers: int = field(
        default=3, metadata={"group": "media",
                             "help": "simulcast layers (a=rid ... send) per published m-line; more: offer refused"}
    )
    max_ssrcs_per_track: int = field(
        default=12,
        metadata={"group": "media",
                  "help": "SSRCs (media + RTX) one published m-line may use over its life; packets of "
                          "further SSRCs are dropped (drop reason ssrc_limit)"},
    )
    data_max_message_bytes: int = field(
        default=16 * 1024,
        metadata={"group": "media", "help": "largest data channel message relayed (UTF-8 bytes); larger: refused "
                                            "with message_too_large"},
    )
    data_rate: float = field(
        default=50.0, metadata={"group": "media", "help": "data channel messages per second one participant may send"}
    )
    data_burst: int = field(
        default=150, metadata={"group": "media", "help": "data channel messages one participant may send at once"}
    )
    data_max_buffered_bytes: int = field(
        default=1024 * 1024,
        metadata={"group": "media", "help": "data waiting on one recipient's channel before messages to it are "
                                            "dropped (data_lost)"},
    )
    data_room_rate: float = field(
        default=5000.0,
        metadata={"group": "media", "help": "data channel deliveries (a message of up to 1,200 bytes to one recipient) "
                                            "per second in one room, everyone's together (bursts of twice that; one "
                                            "sender a quarter of it); over it: rate_limited"},
    )
    data_history: int = field(
        default=50, metadata={"group": "media", "help": "chat messages a room keeps for late joiners (0 = none)"}
    )
    max_participants_per_room: int = field(default=50, metadata={"group": "signalling",
                                                                 "help": "join refused beyond this"})
    p2p: bool = field(default=False, metadata={
        "group": "signalling",
        "help": "rooms of exactly two participants send their media peer to peer when both clients can "
                "(the SFU relays only their signalling); a room's config (`p2p`) overrides this"})
    speaker_interval_ms: int = field(
        default=500, metadata={"group": "media", "help": "how often active speaker is re-evaluated (debounce)"}
    )
    presence_batch_above: int = field(
        default=20, metadata={"group": "media",
                              "help": "rooms with more participants than this announce joins and leaves at most "
                                      "once per presence_interval_ms, several in one `presence` message "
                                      "(docs/protocol.md); 0 = always one message per change"}
    )
    presence_interval_ms: int = field(
        default=1000, metadata={"group": "media", "help": "see presence_batch_above"}
    )

    # --- identity, grants, gating ---
    grant_secret: str = field(
        default="",
        metadata={"group": "access",
                  "help": "HMAC key for grants; empty = random per process (single node only)", "secret": True},
    )
    grant_ttl_s: int = field(default=300, metadata={"group": "access", "help": "lifetime of a room grant, seconds"})
    admin_key: str = field(
        default="", metadata={"group": "access", "help": "admin API key; empty = admin API disabled", "secret": True}
    )
    require_auth: bool = field(
        default=False, metadata={"group": "access",
                                 "help": "refuse joins without a SIWE-backed grant even for open rooms"}
    )
    signin_ttl_s: int = field(
        default=900, metadata={"group": "access", "help": "lifetime of a sign-in token (asks for grants), seconds"}
    )
    auth_rate_per_min: int = field(
        default=30, metadata={"group": "access",
                              "help": "/auth/* requests per minute from one client address (0 = no limit)"}
    )
    auth_nonces_per_address: int = field(
        default=5, metadata={"group": "access",
                             "help": "unused sign-in nonces one client address may hold (0 = no limit)"}
    )
    max_seats_per_identity: int = field(
        default=1, metadata={"group": "access",
                             "help": "seats one identity holds in a room; a further join replaces its oldest "
                                     "seat (0 = no limit)"}
    )

    # --- chain ---
    chain: str = field(default="embedded", metadata={"group": "chain", "help": "'embedded' (in-process EVM) or 'rpc'"})
    rpc_url: str = field(default="", metadata={"group": "chain", "help": "JSON-RPC URL when chain=rpc"})
    chain_id: int = field(default=0, metadata={"group": "chain", "help": "expected chain id when chain=rpc"})
    writer_key: str = field(
        default="", metadata={"group": "writer", "help": "hex private key of the session-log writer", "secret": True}
    )
    session_log_address: str = field(default="", metadata={"group": "chain", "help": "SessionLog contract address"})
    embedded_rpc: bool = field(
        default=True, metadata={"group": "chain", "help": "chain=embedded: serve it over JSON-RPC at /rpc (for browser "
                                                          "wallets) with the dev faucet"}
    )
    embedded_rpc_gas_cap: int = field(
        default=1_000_000, metadata={"group": "chain", "help": "most gas one /rpc call or transaction may use"}
    )
    embedded_rpc_rate: float = field(
        default=20.0, metadata={"group": "chain", "help": "/rpc calls per second per client address (bursts of 5 s)"}
    )
    embedded_rpc_cpu_share: float = field(
        default=0.1, metadata={"group": "chain", "help": "share of the server's event loop /rpc calls may spend in "
                                                         "the EVM, on average"}
    )
    multicall_address: str = field(default="", metadata={"group": "access", "help": "Multicall3 address (chain=rpc)"})
    gate_cache_ttl_s: int = field(default=30, metadata={"group": "access", "help": "cache lifetime of holdings checks"})
    gate_recheck_s: int = field(default=60, metadata={"group": "access",
                                                      "help": "how often present participants are re-checked"})

    # --- sessions ---
    data_dir: str = field(default="var", metadata={"group": "sessions",
                                                   "help": "where the outbox and local CID store live"})
    ipfs_api: str = field(
        default="", metadata={"group": "sessions", "help": "Kubo-compatible IPFS RPC API URL (e.g. "
                              "http://127.0.0.1:5001): session documents are also published there, pinned; "
                              "empty = local CID store only"}
    )
    ipfs_publish_timeout_s: float = field(
        default=10.0, metadata={"group": "sessions", "help": "longest a chain write waits for IPFS to take its "
                                                             "document (then it is retried in the background)"}
    )
    ipfs_pin_service: str = field(
        default="", metadata={"group": "sessions", "help": "IPFS Pinning Service API endpoint (e.g. "
                              "https://api.pinata.cloud/psa): documents IPFS took are also pinned there; needs "
                              "ipfs_api and ipfs_pin_token"}
    )
    ipfs_pin_token: str = field(
        default="", metadata={"group": "sessions", "secret": True,
                              "help": "access token (bearer) of the pinning service"}
    )
    session_grace_s: float = field(default=30.0, metadata={"group": "recording",
                                                           "help": "empty-room grace before a session ends"})
    record_sessions: str = field(
        default="gated", metadata={"group": "recording",
                                   "help": "which rooms' sessions are written on-chain: gated, all or none"}
    )
    record_min_duration_s: float = field(
        default=0.0, metadata={"group": "recording", "help": "sessions shorter than this are not recorded, seconds"}
    )
    record_min_participants: int = field(
        default=1, metadata={"group": "recording", "help": "sessions with fewer distinct participants are not recorded"}
    )

    writer_confirmations: int = field(default=1, metadata={"group": "writer",
                                                           "help": "blocks to wait before a summary counts"})
    writer_batch_size: int = field(default=1, metadata={"group": "writer",
                                                        "help": "summaries per transaction (1 = recordSession)"})
    writer_batch_wait_s: float = field(default=2.0, metadata={"group": "writer",
                                                              "help": "how long a batch may wait to fill"})
    writer_max_fee_gwei: float = field(default=500.0, metadata={"group": "writer",
                                                                "help": "cap on maxFeePerGas for summaries"})

    # --- cluster ---
    redis_url: str = field(default="", metadata={"group": "redis",
                                                 "help": "Redis URL; empty = in-memory state (one process)"})
    redis_password: str = field(
        default="", metadata={"group": "redis",
                              "help": "Redis password (AUTH), kept out of the URL; give it by env, not flag",
                              "secret": True}
    )
    redis_password_file: str = field(
        default="", metadata={"group": "redis", "help": "file holding the Redis password (e.g. a mounted Secret)"}
    )
    redis_ssl_ca_certs: str = field(
        default="", metadata={"group": "redis",
                              "help": "CA bundle (PEM) that verifies a rediss:// Redis; empty = system CAs"}
    )
    workers: str = field(
        default="auto", metadata={"group": "workers",
                                  "help": "media worker processes: 'auto' = one per core this process may use (its "
                                          "CPU affinity and cgroup quota); N > 1 = N processes, rooms placed on them "
                                          "by load and big ones spanning them, a worker that dies restarted "
                                          "(docs/cluster.md \"Workers\"); 1 = the SFU runs inside the server "
                                          "process (as on a 1-core machine); for `basement sfu`, N cluster nodes "
                                          "<node_id>-w<i>"}
    )
    node_id: str = field(default="", metadata={"group": "cluster", "help": "SFU node id (default: hostname-pid)"})
    drain_timeout_s: float = field(
        default=600.0, metadata={"group": "node",
                                 "help": "on SIGTERM, how long an SFU node keeps its rooms before exiting"}
    )
    relay_host: str = field(
        default="", metadata={"group": "node",
                              "help": "the IP address this node's relay socket binds and other nodes send the tracks "
                                      "of rooms spanning nodes to (its address on the cluster's network; SRTP, "
                                      "keyed over the bus); empty = rooms placed here do not span nodes"}
    )
    relay_port: int = field(
        default=0, metadata={"group": "node",
                             "help": "UDP port of the relay socket (0 = any free port; with --workers, worker i "
                                     "uses relay_port + i)"}
    )
    node_capacity: int = field(
        default=0, metadata={"group": "node",
                             "help": "participants one SFU node should hold, for placement (0 = judge by CPU)"}
    )

    def validate(self) -> Settings:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port: {self.port} is not a TCP port")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics_port: {self.metrics_port} is not a TCP port")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level: {self.log_level!r} is not one of debug/info/warning/error")
        if (self.rtp_port_min == 0) != (self.rtp_port_max == 0) or self.rtp_port_min > self.rtp_port_max:
            raise ConfigError("rtp_port_min/rtp_port_max: give both, with min <= max")
        if not 0 <= self.ice_udp_port < 65536:
            raise ConfigError(f"ice_udp_port: {self.ice_udp_port} is not a UDP port")
        if not 0 <= self.ice_tcp_port < 65536:
            raise ConfigError(f"ice_tcp_port: {self.ice_tcp_port} is not a TCP port")
        if self.ice_tcp_port and self.ice_tcp_port in (self.port, self.metrics_port):
            raise ConfigError(f"ice_tcp_port: {self.ice_tcp_port} is also the HTTP or metrics port")
        if self.ice_udp_port and self.rtp_port_min:
            raise ConfigError("ice_udp_port and rtp_port_min/rtp_port_max exclude each other: one port for all, "
                              "or a range to pick from")
        _check_ranges(self.ice_allowed_ranges)
        count = self.worker_count  # raises ConfigError for an unreadable value
        if count > 1 and self.ice_udp_port and self.ice_udp_port + count > 65536:
            raise ConfigError(f"ice_udp_port: {count} workers use ports {self.ice_udp_port}-"
                              f"{self.ice_udp_port + count - 1}, past 65535")
        if count > 1 and self.ice_tcp_port and self.ice_tcp_port + count > 65536:
            raise ConfigError(f"ice_tcp_port: {count} workers use ports {self.ice_tcp_port}-"
                              f"{self.ice_tcp_port + count - 1}, past 65535")
        if count > 1 and self.rtp_port_min and (self.rtp_port_max - self.rtp_port_min + 1) // count < 2:
            raise ConfigError(f"rtp_port_min/rtp_port_max: {count} workers share the range, and each needs at "
                              "least 2 ports of it")
        if self.ice_max_remote_candidates < 1:
            raise ConfigError(f"ice_max_remote_candidates: {self.ice_max_remote_candidates} is less than 1")
        unknown = [p for p in self.srtp_profiles if p not in SRTP_PROFILES]
        if unknown or not self.srtp_profiles:
            raise ConfigError(f"srtp_profiles: {', '.join(unknown) or 'none given'}; choose from "
                              f"{', '.join(SRTP_PROFILES)}")
        if self.datapath not in ("native", "python"):
            raise ConfigError(f"datapath: {self.datapath!r} is not 'native' or 'python'")
        if not (self.pacing_factor == 0 or 1 <= self.pacing_factor <= 100):
            raise ConfigError(f"pacing_factor: {self.pacing_factor} is not 0 (off) or 1 to 100")
        if self.retransmit_budget < 0:
            raise ConfigError(f"retransmit_budget: {self.retransmit_budget} is negative")
        for name in ("ws_max_per_address", "ws_burst", "ws_rate_strikes", "ws_send_queue"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: {getattr(self, name)} is negative")
        if self.ws_rate_per_s < 0 or (self.ws_rate_per_s and self.ws_burst < 1):
            raise ConfigError("ws_rate_per_s/ws_burst: a rate needs a burst of at least 1")
        for url in self.turn_urls:
            if not re.fullmatch(r"(turns?|stuns?):[^\s?]+(\?transport=(udp|tcp))?", url):
                raise ConfigError(f"turn_urls: {url!r} is not a turn:, turns: or stun: URL "
                                  "(host:port, optionally ?transport=udp|tcp)")
        if self.ipfs_pin_service and not (self.ipfs_api and self.ipfs_pin_token):
            raise ConfigError("ipfs_pin_service: needs ipfs_api (the node the service fetches documents from) and "
                              "ipfs_pin_token (BASEMENT_IPFS_PIN_TOKEN or BASEMENT_IPFS_PIN_TOKEN_FILE)")
        if self.ipfs_pin_service and not self.ipfs_pin_service.startswith(("http://", "https://")):
            raise ConfigError(f"ipfs_pin_service: {self.ipfs_pin_service[:80]!r} is not an http(s) URL")
        if any(url.startswith("turn") for url in self.turn_urls) and not self.turn_secret:
            raise ConfigError("turn_urls names a TURN server but turn_secret is not set: set BASEMENT_TURN_SECRET "
                              "or BASEMENT_TURN_SECRET_FILE (coturn's static-auth-secret)")
        if not 60 <= self.turn_credential_ttl_s <= 7 * 86400:
            raise ConfigError(f"turn_credential_ttl_s: {self.turn_credential_ttl_s} is not between 60 s and 7 days")
        if not 0 <= self.sip_port < 65536:
            raise ConfigError(f"sip_port: {self.sip_port} is not a port (0 = off)")
        try:
            ipaddress.ip_address(self.sip_host)
        except ValueError:
            raise ConfigError(f"sip_host: {self.sip_host!r} is not an IP address") from None
        if self.sip_max_calls < 1 or self.sip_requests_per_s <= 0:
            raise ConfigError("sip_max_calls and sip_requests_per_s must be positive")
        if self.sip_port and self.ws_max_per_address and self.sip_max_calls > self.ws_max_per_address:
            raise ConfigError(f"sip_max_calls ({self.sip_max_calls}) is more than ws_max_per_address "
                              f"({self.ws_max_per_address}): every call joins over a WebSocket from sip_host; "
                              "raise ws_max_per_address or lower sip_max_calls")
        if self.relay_host:
            try:
                ipaddress.ip_address(self.relay_host)
            except ValueError:
                raise ConfigError(f"relay_host: {self.relay_host!r} is not an IP address") from None
        if not 0 <= self.relay_port <= 65535:
            raise ConfigError(f"relay_port: {self.relay_port} is not a port number")
        if not 0 <= self.room_span_above <= 1_000_000:
            raise ConfigError(f"room_span_above: {self.room_span_above} is not between 0 and 1000000")
        if not 0.5 <= self.client_ping_interval_s <= 300:
            raise ConfigError(f"client_ping_interval_s: {self.client_ping_interval_s:g} is not between 0.5 and 300 "
                              f"seconds")
        if not 0.5 <= self.client_ping_timeout_s <= 60:
            raise ConfigError(f"client_ping_timeout_s: {self.client_ping_timeout_s:g} is not between 0.5 and 60 "
                              f"seconds")
        if not 0 <= self.resume_grace_s <= 600:
            raise ConfigError(f"resume_grace_s: {self.resume_grace_s:g} is not between 0 and 600 seconds")
        if self.ws_send_queue < 16:
            raise ConfigError(f"ws_send_queue: {self.ws_send_queue} is too small to hold a join (at least 16)")
        for name in ("signin_ttl_s", "grant_ttl_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1 second")
        for name in ("auth_rate_per_min", "auth_nonces_per_address", "max_seats_per_identity",
                     "record_min_participants"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: {getattr(self, name)} is negative")
        if self.record_sessions not in ("gated", "all", "none"):
            raise ConfigError(f"record_sessions: {self.record_sessions!r} is not gated, all or none")
        if self.record_min_duration_s < 0:
            raise ConfigError(f"record_min_duration_s: {self.record_min_duration_s} is negative")
        if not 1 <= self.data_max_message_bytes <= 256 * 1024:
            raise ConfigError(f"data_max_message_bytes: {self.data_max_message_bytes} is not between 1 and 262144 "
                              "(what the SFU's SCTP accepts, a=max-message-size)")
        if self.data_rate <= 0 or self.data_burst < 1 or self.data_room_rate <= 0:
            raise ConfigError("data_rate/data_burst/data_room_rate: rates above 0 and a burst of at least 1")
        if self.data_max_buffered_bytes < self.data_max_message_bytes:
            raise ConfigError("data_max_buffered_bytes: must hold at least one message (data_max_message_bytes)")
        if self.presence_batch_above < 0:
            raise ConfigError(f"presence_batch_above: {self.presence_batch_above} is negative")
        if not 50 <= self.presence_interval_ms <= 10_000:
            raise ConfigError(f"presence_interval_ms: {self.presence_interval_ms} is not between 50 and 10,000")
        if not 0 <= self.data_history <= 1000:
            raise ConfigError(f"data_history: {self.data_history} is not between 0 and 1000")
        if not 1 <= self.max_simulcast_layers <= 16:
            raise ConfigError(f"max_simulcast_layers: {self.max_simulcast_layers} is not between 1 and 16")
        if self.max_ssrcs_per_track < 2 * self.max_simulcast_layers:
            raise ConfigError(f"max_ssrcs_per_track: {self.max_ssrcs_per_track} is below 2 x max_simulcast_layers "
                              "(each layer needs a media and an RTX SSRC)")
        if self.chain not in ("embedded", "rpc"):
            raise ConfigError(f"chain: {self.chain!r} is not 'embedded' or 'rpc'")
        if self.tls not in ("", "self-signed"):
            raise ConfigError(f"tls: {self.tls!r} is not 'self-signed' (or empty: files from tls_cert/tls_key)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert/tls_key: give both, or neither")
        if self.tls and self.tls_cert:
            raise ConfigError("tls: 'self-signed' and tls_cert/tls_key exclude each other")
        if not 21_000 <= self.embedded_rpc_gas_cap <= 30_000_000:
            raise ConfigError(f"embedded_rpc_gas_cap: {self.embedded_rpc_gas_cap} is not between 21,000 and 30,000,000")
        if not 0 < self.embedded_rpc_rate <= 10_000:
            raise ConfigError(f"embedded_rpc_rate: {self.embedded_rpc_rate} is not above 0 and at most 10,000")
        if not 0 < self.embedded_rpc_cpu_share <= 1:
            raise ConfigError(f"embedded_rpc_cpu_share: {self.embedded_rpc_cpu_share} is not above 0 and at most 1")
        if self.ipfs_api and not self.ipfs_api.startswith(("http://", "https://")):
            raise ConfigError(f"ipfs_api: {self.ipfs_api!r} is not an http(s):// URL")
        if not 0.1 <= self.ipfs_publish_timeout_s <= 600:
            raise ConfigError(f"ipfs_publish_timeout_s: {self.ipfs_publish_timeout_s} is not between 0.1 and 600")
        if self.chain == "rpc" and not self.rpc_url:
            raise ConfigError("rpc_url: required when chain=rpc")
        return self

    @property
    def worker_count(self) -> int:
        """`workers` as a number: 'auto' is the cores this process may run on (its CPU affinity, and
        its cgroup's CPU quota rounded up: a container limited to 2 CPUs on a 64-core host gets 2)."""
        raw = self.workers.strip().lower()
        if raw == "auto":
            return max(1, min(len(os.sched_getaffinity(0)), _cgroup_cpus(), MAX_WORKERS))
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_WORKERS:
            raise ConfigError(f"workers: {self.workers!r} is not 'auto' or a number from 1 to {MAX_WORKERS}")
        return int(raw)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls or self.tls_cert)

    @property
    def base_url(self) -> str:
        return self.public_url or f"{'https' if self.tls_enabled else 'http'}://{self.host}:{self.port}"


def _cgroup_cpus(path: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cgroup v2 CPU quota in whole CPUs, rounded up (`docker --cpus`, a Kubernetes CPU limit);
    a large number when there is none or it cannot be read."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        if quota == "max":
            return 1 << 16
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return 1 << 16


def _check_ranges(ranges: list[str]) -> None:
    """`ice_allowed_ranges`: each entry is 'auto' or an address range (CIDR); blank ones are skipped.

    The media plane reads the same list (`sfu.candidates.parse_ranges`), but Settings must not import
    it; the syntax is checked here so a bad value stops every subcommand at start-up, in the same words.
    tests/unit/signalling/test_config.py keeps the two in step.
    """
    for r in ranges:
        r = r.strip()
        if r and r != "auto":
            try:
                ipaddress.ip_network(r, strict=False)
            except ValueError:
                raise ConfigError(f"ice_allowed_ranges: {r!r} is neither 'auto' nor an address range (CIDR)") from None


def _field_type(f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(Settings)
    return hints[f.name]


def _convert(name: str, tp: Any, raw: str) -> Any:
    try:
        if tp is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        origin = typing.get_origin(tp)
        if origin in (list, types.GenericAlias) or tp == list[str]:
            return [p.strip() for p in raw.split(",") if p.strip()]
        return raw
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {getattr(tp, '__name__', tp)}") from None


def group_fields(groups: tuple[str, ...] | list[str] | None = None) -> list[dataclasses.Field]:
    """The settings of these groups (all settings for None), in declaration order."""
    if groups is not None:
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown settings groups: {sorted(unknown)}")
    return [f for f in dataclasses.fields(Settings) if groups is None or f.metadata["group"] in groups]


def add_arguments(parser: argparse.ArgumentParser, command: str | None = None) -> None:
    """Add one `--flag` per setting that `command` reads (SUBCOMMAND_GROUPS; None = every setting),
    under a heading per group, with default None so env/defaults show through. The groups are kept
    on the parsed namespace, so `load(args)` reads exactly those.

    A secret setting gets `--name-file` instead; `--name` itself is kept, hidden, only so that
    `load` can refuse it with the reason rather than argparse saying "unrecognized arguments".
    """
    groups = SUBCOMMAND_GROUPS[command] if command is not None else tuple(GROUPS)
    parser.set_defaults(settings_groups=groups)
    names = {f.name for f in dataclasses.fields(Settings)}
    sections = {g: parser.add_argument_group(f"settings: {GROUPS[g]}") for g in GROUPS if g in groups}
    for f in group_fields(groups):
        section = sections[f.metadata["group"]]
        if f.metadata.get("secret"):
            flag = "--" + f.name.replace("_", "-")
            section.add_argument(flag, dest=f.name, default=None, help=argparse.SUPPRESS)
            if f.name + "_file" in names:
                continue  # a setting of its own names the file (e.g. redis_password_file)
            section.add_argument(
                flag + "-file",
                dest=f.name + "_file",
                default=None,
                help=f"file holding the {f.metadata.get('help', '')} "
                     f"[env {ENV_PREFIX}{f.name.upper()} or {ENV_PREFIX}{f.name.upper()}_FILE]",
            )
            continue
        section.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            help=f"{f.metadata.get('help', '')} [env {ENV_PREFIX}{f.name.upper()}]",
        )


def load(args: argparse.Namespace | None = None, env: dict[str, str] | None = None, *,
         groups: tuple[str, ...] | list[str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, then environment, then CLI args, then keyword overrides.

    Only the settings of `groups` (default: those `add_arguments` put on `args`, else all) are read
    from the environment and args; the others keep their defaults.
    """
    env = os.environ if env is None else env
    if groups is None and args is not None:
        groups = getattr(args, "settings_groups", None)
    values: dict[str, Any] = {}
    for f in group_fields(groups):
        tp = _field_type(f)
        key = ENV_PREFIX + f.name.upper()
        if key in env:
            values[f.name] = _convert(key, tp, env[key])
        raw = getattr(args, f.name, None) if args is not None else None
        if f.metadata.get("secret"):
            own_file = any(g.name == f.name + "_file" for g in dataclasses.fields(Settings))
            secret = _secret(f.name, env, args, refused=raw, files=not own_file)
            if secret is not None:
                values[f.name] = secret
            continue
        if raw is not None:
            values[f.name] = _convert("--" + f.name.replace("_", "-"), tp, raw)
    values.update(overrides)
    return Settings(**values).validate()


def _secret(name: str, env: Any, args: argparse.Namespace | None, *, refused: str | None,
            files: bool = True) -> str | None:
    """A secret from `--name-file`, `BASEMENT_NAME_FILE` or `BASEMENT_NAME`; never from `--name`.
    `files=False`: the secret has its own `<name>_file` setting, read by its user; env only here."""
    flag, key = "--" + name.replace("_", "-"), ENV_PREFIX + name.upper()
    if refused is not None:
        raise ConfigError(f"{flag}: secrets are not accepted as command-line flags (every local user can read a "
                          f"process's arguments in ps or /proc/<pid>/cmdline, and shells keep them in history); "
                          f"set {key} in the environment or put it in a file named by {flag}-file or {key}_FILE")
    if not files:
        return env[key] if key in env else None
    path = getattr(args, name + "_file", None) if args is not None else None
    where = f"{flag}-file"
    if path is None and key + "_FILE" in env:
        path, where = env[key + "_FILE"], key + "_FILE"
        if key in env:
            raise ConfigError(f"{key} and {key}_FILE are both set: give one")
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read {path!r}: {e}") from None
    if not value:
        raise ConfigError(f"{where}: {path!r} is empty")
    return value
