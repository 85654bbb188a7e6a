"""HTTPS and WSS (issue #18, TLS): a certificate from files, or a self-signed one made at start.

The clients verify the server as a real one would: against the certificate file (a private CA's
or the server's own), never with verification off; the self-signed mode is checked by the
fingerprint the server prints, which is what a user compares with the browser's warning page.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signalling import config
from signalling.protocol.client import Client
from signalling.run.serve import start_server
from tests.support.media import CounterVideo, Sink


def make_cert(tmp_path, name: str = "127.0.0.1") -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def trusting(cert_path: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert_path)


async def test_https_and_wss_with_certificate_files_carry_a_call(make_server, tmp_path):
    cert, key = make_cert(tmp_path)
    server = await make_server(tls_cert=cert, tls_key=key)
    assert server.url.startswith("https://127.0.0.1:")
    ctx = trusting(cert)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/", ssl=ctx) as r:
            assert r.status == 200 and "<html" in (await r.text()).lower()
        # plain HTTP on the TLS port gets no page
        with pytest.raises(aiohttp.ClientError):
            async with http.get(server.url.replace("https://", "http://") + "/") as r:
                await r.read()
        # a client that trusts only the system's CAs refuses the certificate
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(server.url + "/") as r:
                await r.read()
    pub, sub = Client(server.url, ssl=ctx), Client(server.url, ssl=ctx)
    try:
        for c, name in ((pub, "pub"), (sub, "sub")):
            await c.connect()
            await c.join("tls", name)
        assert pub.ws_url.startswith("wss://")
        await pub.publish(video=CounterVideo(96, 64), data=True)
        await sub.publish(data=True)
        _, track = await sub.wait_track(kind="video", timeout=20)
        sink = Sink(track)
        await sink.wait_frames(10, timeout=20)
        assert {(w, h) for _, w, h in sink.timeline[-10:]} == {(96, 64)}
        await sub.wait_data_open()
        pub.send_data("over wss and dtls")
        await sub.wait_for(lambda: [m["data"] for m in sub.data_received()] == ["over wss and dtls"])
    finally:
        for c in (pub, sub):
            await c.close()


async def test_self_signed_mode_serves_a_certificate_with_the_printed_fingerprint(make_server):
    server = await make_server(tls="self-signed")
    assert server.tls is not None and server.tls.self_signed
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # what "accept the warning" does; the fingerprint is the check
    _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    cert = x509.load_der_x509_certificate(der)
    assert ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256())) == server.tls.fingerprint
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=31)
    # a client pinning that certificate joins
    pinned = ssl.create_default_context(cadata=cert.public_bytes(serialization.Encoding.PEM).decode())
    c = Client(server.url, ssl=pinned)
    try:
        await c.connect()
        joined = await c.join("self", "me")
        assert joined["participant"]["name"] == "me"
    finally:
        await c.close()


@pytest.mark.parametrize("values, message", [
    ({"tls": "yes"}, "tls: 'yes' is not 'self-signed'"),
    ({"tls_cert": "/x.pem"}, "tls_cert/tls_key: give both, or neither"),
    ({"tls": "self-signed", "tls_cert": "/x.pem", "tls_key": "/y.pem"}, "exclude each other"),
])
def test_bad_tls_settings_are_refused(values, message):
    with pytest.raises(config.ConfigError) as e:
        config.load(env={}, **values)
    assert message in str(e.value)


async def test_an_unusable_certificate_stops_the_start_with_its_reason(tmp_path):
    cert, _ = make_cert(tmp_path)
    (tmp_path / "wrong.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    settings = config.load(env={}, port=0, metrics_port=0, data_dir=str(tmp_path / "d"), tls_cert=cert,
                           tls_key=str(tmp_path / "wrong.pem"))
    with pytest.raises(config.ConfigError) as e:
        await start_server(settings)
    assert "tls_cert/tls_key: cannot use" in str(e.value) and "key values mismatch" in str(e.value).lower()


async def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path):
    cert, key = make_cert(tmp_path)
    pem = serialization.load_pem_private_key((tmp_path / "key.pem").read_bytes(), None)
    (tmp_path / "enc.pem").write_bytes(pem.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    settings = config.load(env={}, port=0, metrics_port=0, data_dir=str(tmp_path / "d"), tls_cert=cert,
                           tls_key=str(tmp_path / "enc.pem"))
    with pytest.raises(config.ConfigError) as e:
        await start_server(settings)
    assert "is encrypted; give the server an unencrypted key file" in str(e.value)


def test_a_self_signed_certificate_for_every_interface_names_their_addresses():
    from signalling.run import tls

    names = tls._names(config.load(env={}, host="0.0.0.0"))
    assert {"localhost", "127.0.0.1", "::1"} <= set(names) and "0.0.0.0" not in names
    assert set(tls._interface_addresses()) <= set(names)
