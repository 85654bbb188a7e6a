"""LayerSelector: which simulcast layer each DownTrack forwards.

The policy is kept as plain functions of the inputs so it can be tested without a network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack
    from sfu.receiver import Layer, Receiver


class LayerSelector:
    def __init__(self) -> None:
        self.remb: dict[str, int] = {}  # subscriber id -> last REMB (bps)

    def initial_layer(self, rec: Receiver, dt: DownTrack) -> Layer | None:
        """Without other information, forward the best layer the publisher announced."""
        if not rec.layers:
            return None
        return max(rec.layers.values(), key=lambda layer: layer.index)

    def on_remb(self, peer: Any, bitrate: int, ssrcs: list[int]) -> None:
        self.remb[peer.id] = bitrate
        for dt in peer.downtracks.values():
            if dt.slot.ssrc in ssrcs or not ssrcs:
                dt.on_remb(bitrate)


LAYER_NAMES = {"low": 0, "medium": 1, "high": 2}


def requested_index(layers: list[Layer], layer: str | None, width: int | None, height: int | None) -> int | None:
    """The highest layer index a subscriber asks for (None = off).

    An explicit name wins; a rendered size picks the smallest layer that covers it (layers whose
    size is not known yet count as covering, so a new subscriber starts high and comes down).
    """
    if layer == "off" or (width == 0 and height == 0 and layer is None and width is not None):
        return None
    if not layers:
        return None
    ordered = sorted(layers, key=lambda x: x.index)
    if layer in LAYER_NAMES:
        want = LAYER_NAMES[layer]
        fitting = [x.index for x in ordered if x.index <= want]
        return fitting[-1] if fitting else ordered[0].index
    if width or height:
        for x in ordered:
            if not x.width or (x.width >= (width or 0) and x.height >= (height or 0)):
                return x.index
        return ordered[-1].index
    return ordered[-1].index


def pick(layers: list[Layer], max_index: int | None) -> Layer | None:
    if max_index is None:
        return None
    fitting = [x for x in layers if x.index <= max_index]
    return max(fitting, key=lambda x: x.index) if fitting else min(layers, key=lambda x: x.index, default=None)
