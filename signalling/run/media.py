"""The media plane's process-wide settings, applied the same way by every process that runs it."""

from __future__ import annotations

from sfu import data, datapath, downtrack, ingress, pacing, transport
from signalling.config import ConfigError, Settings


def configure_transport(settings: Settings) -> None:
    """Where a node process's SFU gathers, which ports it uses and which candidates it checks (the
    all-in-one server hands the same as an IceConfig to its in-process SfuNode instead)."""
    transport.configure_ice(settings.ice_addresses, settings.public_ip)
    transport.configure_ports(settings.rtp_port_min, settings.rtp_port_max)
    transport.configure_udp_port(settings.ice_udp_port)
    transport.configure_tcp_port(settings.ice_tcp_port)
    transport.configure_candidates(settings.ice_allowed_ranges, settings.ice_max_remote_candidates)


def configure_media(settings: Settings) -> None:
    """Ingress limits, the retransmission budget, data channel limits, SRTP profiles and the data path. Raises
    ConfigError when the native data path is asked for but not built."""
    ingress.configure_ingress(ingress.IngressLimits(settings.max_simulcast_layers, settings.max_ssrcs_per_track))
    downtrack.configure_retransmission(settings.retransmit_budget)
    data.configure_data(data.DataLimits(
        max_message_bytes=settings.data_max_message_bytes, rate=settings.data_rate, burst=settings.data_burst,
        max_buffered_bytes=settings.data_max_buffered_bytes, history=settings.data_history,
        room_rate=settings.data_room_rate, room_burst=2 * settings.data_room_rate))
    transport.configure_transport_cc(settings.transport_cc)
    transport.configure_playout_delay(settings.playout_delay)
    try:
        pacing.configure_pacing(settings.pacing_factor)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        transport.configure_srtp(settings.srtp_profiles)
    except ValueError as e:
        raise ConfigError(f"srtp_profiles: {e}") from None
    try:
        datapath.configure(settings.datapath, udp_gso=settings.udp_gso, aes_ni=settings.aes_ni)
    except datapath.DataPathError as e:
        raise ConfigError(str(e)) from None


async def open_node_media(settings: Settings) -> None:
    """Everything a media node process (`basement sfu`, a worker) sets up before it takes rooms: the
    transport and media settings, and its single UDP/TCP ports, opened now so that a port in use is
    an error at start, not at the first join."""
    configure_transport(settings)
    configure_media(settings)
    transport.open_udp_port()
    await transport.open_tcp_port()


def close_node_media(settings: Settings) -> None:
    if settings.ice_udp_port:
        transport.close_udp_port(settings.ice_udp_port)
    if settings.ice_tcp_port:
        transport.close_tcp_port(settings.ice_tcp_port)

