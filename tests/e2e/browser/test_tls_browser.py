"""Chromium on the web client over HTTPS and WSS, the server's certificate self-signed (issue #18).

The browser accepts exactly that certificate, by its public key's hash
(`--ignore-certificate-errors-spki-list`, what a user does by checking the printed fingerprint and
clicking through the warning), not every certificate: the page is a secure context, so capture
and the WebSocket work as they would behind a real certificate.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from signalling.protocol.client import Client
from tests.support.browser import VIDEO, Browser, poll
from tests.support.media import CounterVideo, decoded_sizes

pytestmark = pytest.mark.timeout(120)


async def _certificate(port: int) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der)


async def test_chromium_joins_over_https_with_a_self_signed_certificate_and_decodes(make_server):
    server = await make_server(tls="self-signed")
    cert = await _certificate(server.port)
    assert ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256())) == server.tls.fingerprint
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    spki_hash = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    pinned = ssl.create_default_context(cadata=cert.public_bytes(serialization.Encoding.PEM).decode())
    bot = Client(server.url, ssl=pinned)
    params = {"room": "https", "name": "secure", "autojoin": "1", "video": VIDEO}
    page = Browser(f"{server.url}/?{urlencode(params)}",
                   extra_flags=[f"--ignore-certificate-errors-spki-list={spki_hash}"])
    try:
        await bot.connect()
        await bot.join("https", "bot")
        await bot.publish(video=CounterVideo(96, 64))
        await page.start()
        # (start() returns before the page has loaded: wait for it, then check what it is)
        await page.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        assert await page.evaluate("[location.protocol, window.isSecureContext]") == ["https:", True]
        await page.click("#join-button")
        await page.wait_for("window.basement && window.basement.state === 'joined'", timeout=30)
        me = await page.wait_for("window.basement.published.video && window.basement.participant", timeout=30)
        # the bot decodes the page's camera, and the page decodes the bot's (its WebSocket is wss://)
        _, track = await bot.wait_track(kind="video", participant=me["id"], timeout=30)
        await decoded_sizes(track, 15)
        bot_id = bot.participant["id"]

        async def page_decoded() -> int | None:
            stats = await page.evaluate("window.basement.stats()")
            video = [s for s in stats["inbound"] if s["participant"] == bot_id and s["kind"] == "video"]
            n = (video[0].get("framesDecoded") or 0) if video else 0
            return n if n >= 15 and (video[0]["frameWidth"], video[0]["frameHeight"]) == (96, 64) else None

        await poll(page_decoded, "the bot's video decoded in the page at 96x64")
        entries = await page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert all(not u.startswith("http:") for u in entries), entries
    finally:
        await page.close()
        await bot.close()
