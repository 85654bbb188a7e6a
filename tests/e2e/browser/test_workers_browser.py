"""Chromium in rooms of `basement serve --workers 2`.

A page whose worker is killed (SIGKILL) is told `removed` with `rejoin`, joins the room again by
itself, lands on the live worker, and decodes the publisher's video again, within 5 s of the kill.

A room spanning both workers: Chromium publishes simulcast on one, and subscribers on the other get
the layers they ask for (the relayed layers' SSRCs learnt from the packets' RIDs at the source and
announced), and dynacast hears the other worker's needs (a layer nobody wants stops being encoded).
"""

from __future__ import annotations

import json
import os
import signal
import time
from types import SimpleNamespace

import pytest

from tests.e2e.browser.test_browser import events_js, joined, media_both_ways, tile_name_js, wait_decoding
from tests.e2e.browser.test_simulcast import F, Q, _own_remb, _publisher, _wait_size
from tests.e2e.cluster.test_cluster import cluster  # noqa: F401 (the fixture)
from tests.e2e.cluster.test_cluster import joined as cluster_join
from tests.support.browser import poll
from tests.support.clusterfix import placement
from tests.support.media import CounterVideo, Sink, Tone
from tests.support.workersfix import joined as join_client

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def each_data_path() -> str:
    """One run, natively: the worker process picks its data path from its settings (the default),
    and what is tested here is who is told what and who joins where."""
    return "native"


async def test_the_page_rejoins_by_itself_when_its_worker_dies(serve, browser):
    s = await serve(workers=2)
    alice, _ = await join_client(serve, s.url, "wkweb", "alice")
    await alice.publish(audio=Tone(), video=CounterVideo())
    page = await browser(SimpleNamespace(url=s.url), "wkweb", "chromium")
    me = (await joined(page))["participant"]
    await media_both_ways(page, alice, me)
    (home,) = [w for w, n in (await s.metric("basement_rooms")).items() if n == 1]

    t0 = time.monotonic()
    os.kill(s.pids()[int(home)], signal.SIGKILL)
    msg = await alice.wait_message("removed", timeout=5)
    assert (msg["reason"], msg["rejoin"]) == ("node_lost", True)
    # alice is a bot (the Python client does not rejoin by itself): she comes back as a new participant
    alice, _ = await join_client(serve, s.url, "wkweb", "alice")
    await alice.publish(audio=Tone(), video=CounterVideo())
    # the page joined again on its own (a new participant), and sees and decodes her again
    await page.wait_for("window.basement.log.some(e => e.text.startsWith('the server moved this call (node_lost)'))",
                        timeout=5)
    me2 = (await joined(page))["participant"]
    assert me2["id"] != me["id"] and me2["name"] == "chromium"
    assert await page.wait_for(tile_name_js(alice.participant["id"]), timeout=10) == "alice"
    await wait_decoding(page, alice.participant["id"], more=5, timeout=10)
    took = time.monotonic() - t0
    assert took < 5, f"the page decoded again {took:.1f} s after the kill"
    # both on the live worker (the dead one may be back by now: the room stayed where it was placed)
    rooms = await s.metric("basement_rooms")
    assert rooms.get(str(1 - int(home))) == 1, rooms
    assert await page.evaluate("window.basement.state") == "joined"


async def test_simulcast_from_one_worker_each_subscriber_on_the_other_gets_its_layer(serve, browser):
    s = await serve(workers=2, BASEMENT_ROOM_SPAN_ABOVE="1")
    page, view = await _publisher(SimpleNamespace(url=s.url), browser, "wkspan")
    video = view["published"]["video"]
    # the page alone holds the room's home worker's share (1): the next subscriber goes to the other
    low, _ = await join_client(serve, s.url, "wkspan", "low")
    high, _ = await join_client(serve, s.url, "wkspan", "high")
    participants = await s.metric("basement_participants")
    assert sorted(participants.values()) == [1, 2], participants
    await low_and_high_get_their_layers(view, low, high, "the other worker", "either worker")
    relayed = await s.metric("basement_relays_out")
    assert sorted(relayed.values()) == [0, 1], relayed  # the page's video, to the other worker

    # nobody wants h, wherever they are: the page is told to encode q and f only
    async def dynacast_q_f():
        found = await page.evaluate(f"{events_js('dynacast')}.filter(m => m.track === {json.dumps(video)})")
        return found and found[-1]["active"] == ["q", "f"]

    await poll(dynacast_q_f, "dynacast of q and f", timeout=15)


async def test_simulcast_published_on_one_cluster_node_each_subscriber_on_two_others_gets_its_layer(
        cluster, browser):  # noqa: F811
    """Redis, two replicas, three `basement sfu` with a relay address, room_span_above 1: Chromium
    publishes simulcast on the room's home, a "low" subscriber lands on a second node and a "high"
    one on the third; the video reaches both over SRTP relays, and the layer selector of each node
    gives its subscriber the layer it asked for."""
    c = await cluster(nodes=3, replicas=2, BASEMENT_RELAY_HOST="127.0.0.1", BASEMENT_ROOM_SPAN_ABOVE="1")
    _, view = await _publisher(SimpleNamespace(url=c.replicas[0].url), browser, "clspan")
    low, _ = await cluster_join(cluster, c.replicas[1].url, "clspan", "low")
    high, _ = await cluster_join(cluster, c.replicas[0].url, "clspan", "high")
    home = await placement(c, "clspan")
    relays = {n.id: await n.metric("basement_relays_in") for n in c.nodes}
    assert relays[home] == 0 and sorted(relays.values()) == [0, 1, 1], relays  # a node each
    await low_and_high_get_their_layers(view, low, high, "a second node", "a third node")


async def low_and_high_get_their_layers(view: dict, low, high, low_on: str, high_on: str) -> None:
    """Two aiortc subscribers of the page's simulcast video ask for low and high, and decode q and f."""
    video = view["published"]["video"]
    sinks = {}
    for sub in (low, high):
        info, track = await sub.wait_track(kind="video", participant=view["participant"]["id"], timeout=20)
        assert info["simulcast"] and set(info["layers"]) == {"q", "h", "f"}, info
        _own_remb(sub, track)
        sinks[sub] = Sink(track)
    await low.subscription(video, layer="low")
    await high.subscription(video, layer="high")
    await _wait_size(sinks[low], Q, f"low subscriber (on {low_on}) on q", timeout=40)
    await _wait_size(sinks[high], F, f"high subscriber (on {high_on}) on f", timeout=40)
