"""The expected size of a forwarded layer (`playback.layer_size`): nominal, or what the publisher's
encoder scaled that layer to, but never a size another layer has."""

from __future__ import annotations

from tests.e2e.firefox.playback import layer_size

NOMINAL = {"q": (240, 135), "h": (480, 270), "f": (960, 540)}


def test_a_layer_at_its_nominal_size():
    assert layer_size(NOMINAL, "f") == (960, 540)
    assert layer_size(NOMINAL, "q") == (240, 135)


def test_an_odd_side_rounded_up_to_even():
    assert layer_size({**NOMINAL, "q": (240, 136)}, "q") == (240, 136)  # VP9
    assert layer_size({**NOMINAL, "q": (240, 137)}, "q") is None


def test_a_layer_its_encoder_scaled_down_on_a_busy_machine():
    # what Chromium did in a run beside a fuzzer: every layer at 2/3 of its size
    adapted = {"q": (160, 90), "h": (320, 180), "f": (640, 360)}
    assert layer_size(adapted, "f") == (640, 360)


def test_no_size_while_it_could_be_another_layer():
    # f scaled to h's size: a forwarded h would look the same, so the layer cannot be told
    assert layer_size({"q": (240, 135), "h": (480, 270), "f": (480, 270)}, "f") is None
    assert layer_size({"q": (240, 135), "h": (480, 270), "f": (480, 270)}, "h") is None


def test_no_size_above_the_nominal_or_before_any_frame():
    assert layer_size({"q": (480, 270), "f": (960, 540)}, "q") is None  # not a q
    assert layer_size({"f": (0, 0)}, "f") is None
    assert layer_size({"h": (480, 270)}, "f") is None
