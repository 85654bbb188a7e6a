"""The C LayerCore (NativeLayer) against sfu.track.Layer, in lockstep: the same packets at the same
times must leave the same packets, bytes, last arrival, window and bitrate (every double equal)."""

from __future__ import annotations

import random

import pytest

from sfu import datapath
from sfu.track import Layer

FIELDS = ("packets", "bytes", "last_packet_at", "_window_start", "_window_bytes", "bitrate", "spatial_bitrates")


@pytest.fixture(autouse=True, params=["both"])
def data_path(request: pytest.FixtureRequest) -> str:
    """Overrides the per-path parametrisation of tests/unit/sfu: these tests use both classes at once."""
    return request.param


@pytest.mark.parametrize("seed", range(8))
def test_rate_accounting_in_lockstep(seed: int) -> None:
    r = random.Random(seed)
    layers = (Layer("h", 90000), datapath.NativeLayer("h", 90000))
    now = r.choice([0.0, 1e-9, 12.5, 1e6])
    for _ in range(5000):
        # bursts, paced packets, pauses longer than the window, and time standing still
        now += r.choice([0.0, r.uniform(0, 0.002), r.uniform(0, 0.05), r.uniform(0.9, 1.1), r.uniform(1, 30)])
        nbytes = r.choice([0, 1, r.randrange(60, 300), r.randrange(900, 1300), 65535])
        sid = r.choice([0, 0, 1, 2, 7]) if seed % 2 else 0  # VP9 SVC's spatial layers, on odd seeds
        for layer in layers:
            layer.account(nbytes, now, sid)
        assert [getattr(layers[0], f) for f in FIELDS] == [getattr(layers[1], f) for f in FIELDS]
    assert layers[1].bitrate > 0 and layers[1].packets == 5000
    rates = layers[1].spatial_bitrates
    assert all(rates[i] for i in (0, 1, 2, 7)) if seed % 2 else (rates[0] == layers[1].bitrate and not any(rates[1:]))


def test_spatial_rates_add_up_to_the_layers() -> None:
    """Three spatial layers of 100, 300 and 600 bytes a packet, 10 pictures a second: each its own
    rate, together the layer's."""
    for layer in (Layer("", 90000), datapath.NativeLayer("", 90000)):
        for i in range(31):
            for sid, size in enumerate((100, 300, 600)):
                layer.account(size, 1.0 + i / 10, sid)
        assert [round(x) for x in layer.spatial_bitrates[:3]] == [8000, 24000, 48000]
        assert round(sum(layer.spatial_bitrates)) == round(layer.bitrate) == 80000


def test_the_rest_of_a_layer_is_the_python_one() -> None:
    layer = datapath.NativeLayer("f", 90000)
    assert (layer.rid, layer.index, layer.ssrc, layer.packets, layer.bitrate) == ("f", 2, None, 0, 0.0)
    layer.ssrc = 0x1234
    layer.account(100, 5.0)
    assert layer.arriving(5.5) and not layer.arriving(7.0)


def test_refuses_what_is_not_a_packet_size() -> None:
    layer = datapath.NativeLayer("", 48000)
    with pytest.raises(ValueError, match="packet's size"):
        layer.account(-1, 1.0)
    with pytest.raises(TypeError):
        layer.account("1", 1.0)
    with pytest.raises(ValueError, match="spatial id"):
        layer.account(100, 1.0, 8)
    assert layer.packets == 0
