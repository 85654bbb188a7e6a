"""One typed settings object for every Basement process.

Values come, in increasing priority, from the defaults below, `BASEMENT_<FIELD>` environment
variables, and CLI flags (`--field-name`). `docs/configuration.md` lists them all; a test keeps the
two in step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "BASEMENT_"


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass
class Settings:
    # --- HTTP / WebSocket signalling ---
    host: str = field(default="127.0.0.1", metadata={"help": "address the HTTP/WebSocket server binds"})
    port: int = field(default=8080, metadata={"help": "HTTP/WebSocket port (0 = any free port)"})
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "address of the Prometheus endpoint"})
    metrics_port: int = field(default=9090, metadata={"help": "Prometheus /metrics port (0 disables it)"})
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    public_url: str = field(
        default="", metadata={"help": "URL users open (for SIWE domain/URI); default http://host:port"}
    )

    # --- media plane ---
    ice_addresses: list[str] = field(
        default_factory=lambda: ["127.0.0.1"],
        metadata={"help": "local addresses ICE gathers host candidates on; 'auto' = every interface"},
    )
    public_ip: str = field(
        default="", metadata={"help": "address advertised in candidates (NAT 1:1, hostNetwork pods)"}
    )
    rtp_port_min: int = field(default=0, metadata={"help": "lowest UDP port for media (0 = any)"})
    rtp_port_max: int = field(default=0, metadata={"help": "highest UDP port for media (0 = any)"})
    max_participants_per_room: int = field(default=50, metadata={"help": "join refused beyond this"})
    speaker_interval_ms: int = field(
        default=500, metadata={"help": "how often active speaker is re-evaluated (debounce)"}
    )

    # --- identity, grants, gating ---
    grant_secret: str = field(
        default="",
        metadata={"help": "HMAC key for grants; empty = random per process (single node only)"},
    )
    grant_ttl_s: int = field(default=300, metadata={"help": "lifetime of a room grant, seconds"})
    admin_key: str = field(default="", metadata={"help": "admin API key; empty = admin API disabled"})
    require_auth: bool = field(
        default=False, metadata={"help": "refuse joins without a SIWE-backed grant even for open rooms"}
    )

    # --- chain ---
    chain: str = field(default="embedded", metadata={"help": "'embedded' (in-process EVM) or 'rpc'"})
    rpc_url: str = field(default="", metadata={"help": "JSON-RPC URL when chain=rpc"})
    chain_id: int = field(default=0, metadata={"help": "expected chain id when chain=rpc"})
    writer_key: str = field(default="", metadata={"help": "hex private key of the session-log writer"})
    session_log_address: str = field(default="", metadata={"help": "SessionLog contract address"})
    multicall_address: str = field(default="", metadata={"help": "Multicall3 address (chain=rpc)"})
    gate_cache_ttl_s: int = field(default=30, metadata={"help": "cache lifetime of holdings checks"})
    gate_recheck_s: int = field(default=60, metadata={"help": "how often present participants are re-checked"})

    # --- sessions ---
    data_dir: str = field(default="var", metadata={"help": "where the outbox and local CID store live"})
    session_grace_s: float = field(default=30.0, metadata={"help": "empty-room grace before a session ends"})

    writer_confirmations: int = field(default=1, metadata={"help": "blocks to wait before a summary counts"})
    writer_batch_size: int = field(default=1, metadata={"help": "summaries per transaction (1 = recordSession)"})
    writer_batch_wait_s: float = field(default=2.0, metadata={"help": "how long a batch may wait to fill"})
    writer_max_fee_gwei: float = field(default=500.0, metadata={"help": "cap on maxFeePerGas for summaries"})

    # --- cluster ---
    redis_url: str = field(default="", metadata={"help": "Redis URL; empty = in-memory state (one process)"})
    node_id: str = field(default="", metadata={"help": "SFU node id (default: hostname-pid)"})
    drain_timeout_s: float = field(
        default=600.0, metadata={"help": "on SIGTERM, how long an SFU node keeps its rooms before exiting"}
    )
    node_capacity: int = field(
        default=0, metadata={"help": "participants one SFU node should hold, for placement (0 = judge by CPU)"}
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
        if self.chain not in ("embedded", "rpc"):
            raise ConfigError(f"chain: {self.chain!r} is not 'embedded' or 'rpc'")
        if self.chain == "rpc" and not self.rpc_url:
            raise ConfigError("rpc_url: required when chain=rpc")
        return self

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one `--flag` per setting (default None, so env/defaults show through)."""
    for f in dataclasses.fields(Settings):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            help=f"{f.metadata.get('help', '')} [env {ENV_PREFIX}{f.name.upper()}]",
        )


def load(args: argparse.Namespace | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, then environment, then CLI args, then keyword overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        tp = _field_type(f)
        key = ENV_PREFIX + f.name.upper()
        if key in env:
            values[f.name] = _convert(key, tp, env[key])
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is not None:
            values[f.name] = _convert("--" + f.name.replace("_", "-"), tp, raw)
    values.update(overrides)
    return Settings(**values).validate()
