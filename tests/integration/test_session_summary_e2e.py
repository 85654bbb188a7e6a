"""A real room on the all-in-one server ends -> its summary is on the embedded chain and verifies."""

from __future__ import annotations

import asyncio

import aiohttp
from eth_account import Account

from signalling.protocol.client import Client
from signalling.sessions.cidstore import DirCidStore
from signalling.sessions.cli import list_sessions, prove_participant, verify_session
from signalling.sessions.summary import hex32, room_id
from tests.support.media import CounterVideo, Sink, Tone
from tests.support.signin import sign_in as _sign_in


async def test_finished_room_is_recorded_once_and_verifies(make_server):
    server = await make_server(record_sessions="all")  # "standup" is an open room: off-chain by default
    alice = Account.create()
    async with aiohttp.ClientSession() as http:
        token = await _sign_in(http, server.url, alice)
        async with http.post(f"{server.url}/auth/grant", json={"room": "standup", "signInToken": token}) as r:
            grant = (await r.json())["grant"]
    a, b = Client(server.url), Client(server.url)
    for c in (a, b):
        await c.connect()
    try:
        await a.join("standup", "alice", grant=grant)
        await b.join("standup", "bob")
        await a.publish(audio=Tone(), video=CounterVideo(96, 64))
        await b.publish(audio=Tone())
        _, track = await b.wait_track(kind="video")
        await Sink(track).wait_frames(15)
        await a.leave()
        await b.leave()
    finally:
        for c in (a, b):
            await c.close()
    cp = server.control
    session_log = cp.embedded.deployment.session_log
    store = DirCidStore(f"{server.settings.data_dir}/cids")
    records = []
    for _ in range(100):  # grace (0.5 s) + the writer's transaction
        wanted = hex32(room_id("standup"))
        records = [r for r in await list_sessions(cp.w3, session_log) if r.fields.get("roomId") == wanted]
        if records:
            break
        await asyncio.sleep(0.1)
    assert len(records) == 1, records
    fields = records[0].fields
    assert fields["participantCount"] == 2 and fields["peakParticipants"] == 2
    assert fields["mediaPackets"] > 0 and fields["mediaBytes"] > fields["mediaPackets"]
    result = await verify_session(cp.w3, session_log, store, records[0].session_id)
    assert result.ok, result.reasons
    proof = await prove_participant(cp.w3, session_log, store, records[0].session_id, alice.address)
    assert proof["valid"]
