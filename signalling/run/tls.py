"""HTTPS and WSS for the signalling server: certificate files, or a self-signed one for LAN trials.

Browsers give `getUserMedia` only to secure pages, so a server reached by anything but localhost
must serve HTTPS (or sit behind a proxy that does: docs/operations.md). `tls_cert`/`tls_key` name
PEM files (the key is read once here and never logged); `tls = self-signed` makes an ECDSA P-256
certificate at start for the served host names and addresses, valid for 30 days, whose SHA-256
fingerprint the server prints so that a user can check what the browser shows before accepting it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signalling.config import ConfigError, Settings

SELF_SIGNED_DAYS = 30


@dataclass(frozen=True)
class Tls:
    context: ssl.SSLContext
    fingerprint: str  # SHA-256 of the certificate, colon-separated hex (what browsers show)
    self_signed: bool


def server_tls(settings: Settings) -> Tls | None:
    """The TLS context the HTTP server serves with, or None (plain HTTP). Raises ConfigError."""
    if settings.tls_cert:
        return _from_files(settings.tls_cert, settings.tls_key)
    if settings.tls == "self-signed":
        return _self_signed(_names(settings))
    return None


def _context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _from_files(cert_path: str, key_path: str) -> Tls:
    ctx = _context()

    def no_password() -> str:
        # (without a callback OpenSSL would prompt on the terminal for an encrypted key)
        raise ConfigError(f"tls_key: {key_path!r} is encrypted; give the server an unencrypted key file "
                          "readable only by its user")

    try:
        ctx.load_cert_chain(cert_path, key_path, password=no_password)
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except ConfigError:
        raise
    except (OSError, ssl.SSLError, ValueError) as e:
        # (the message names the file and OpenSSL's reason, never the key's bytes)
        raise ConfigError(f"tls_cert/tls_key: cannot use {cert_path!r} with {key_path!r}: "
                          f"{type(e).__name__}: {e}") from None
    return Tls(ctx, _fingerprint(cert), self_signed=False)


def _names(settings: Settings) -> list[str]:
    """What the certificate covers: the bound host (every interface's address when it binds them
    all, the LAN case this mode is for), public_url's host, localhost and loopback."""
    names = ["localhost", "127.0.0.1", "::1"]
    hosts = [settings.host, urlsplit(settings.public_url).hostname or ""]
    if settings.host in ("0.0.0.0", "::", ""):
        hosts += _interface_addresses()
    for host in hosts:
        if host and host not in ("0.0.0.0", "::") and host not in names:
            names.append(host)
    return names


def _interface_addresses() -> list[str]:
    import ifaddr  # (aioice's dependency, so always there; only this start-up path needs it)

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]  # IPv6: (address, flowinfo, scope)
            if "%" not in address and not ipaddress.ip_address(address).is_link_local:
                out.append(address)
    return out


def _self_signed(names: list[str]) -> Tls:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Basement (self-signed)")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    ctx = _context()
    # ssl loads a chain only from files: a private directory, removed at once (the key is then only
    # in this process's memory)
    with tempfile.TemporaryDirectory(prefix="basement-tls-") as d:
        cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        ctx.load_cert_chain(cert_path, key_path)
    return Tls(ctx, _fingerprint(cert), self_signed=True)


def _fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
