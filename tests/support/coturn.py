"""A real coturn TURN server for tests (on 127.0.0.1, or `host`), with the TURN REST API shared secret.

Its configuration goes to a file of mode 0600 (the secret stays out of every process's argv), its
log to `turn.log` in the test's directory; relayed traffic only ever goes to 127.0.0.1. It also
listens for TURN over TLS (`url("tls")`, a `turns:` URL) with a self-signed certificate for
its address made at start; `spki_sha256` is what a browser pins to accept it. Clients reach it at
`host` (e.g. the server side of a tests/support/netns.py link); it relays from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signalling.ports import free_port
from tests.support import procs

RELAY_PORTS = (50000, 50999)  # where coturn allocates relayed addresses


class Coturn:
    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host
        self.port = free_port()
        self.tls_port = free_port()
        self.secret = secrets.token_hex(16)
        self.spki_sha256 = ""  # base64 SHA-256 of the TLS certificate's public key, once started
        self.proc: subprocess.Popen | None = None

    def url(self, transport: str = "udp") -> str:
        """`udp` and `tcp`: TURN on the plain port; `tls`: TURN over TLS (a `turns:` URL, over TCP)."""
        if transport == "tls":
            return f"turns:{self.host}:{self.tls_port}?transport=tcp"
        return f"turn:{self.host}:{self.port}?transport={transport}"

    @property
    def log(self) -> str:
        path = self.workdir / "turn.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self, timeout: float = 10.0) -> Coturn:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self._certificate()
        conf = self.workdir / "turnserver.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join([
                f"listening-ip={self.host}", "relay-ip=127.0.0.1", f"listening-port={self.port}",
                f"min-port={RELAY_PORTS[0]}", f"max-port={RELAY_PORTS[1]}",
                "use-auth-secret", f"static-auth-secret={self.secret}", "realm=basement.test",
                f"tls-listening-port={self.tls_port}", f"cert={cert}", f"pkey={key}",
                "fingerprint", "no-dtls", "no-cli", "no-multicast-peers",
                # the SFU under test listens on loopback, which coturn refuses to relay to by default
                "allow-loopback-peers",
                f"userdb={self.workdir / 'turndb'}", f"pidfile={self.workdir / 'turnserver.pid'}",
                f"log-file={self.workdir / 'turn.log'}", "simple-log", "verbose", "",
            ]))
        self.proc = _spawn(conf)
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"coturn did not start (exit {self.proc.returncode}):\n"
                                       f"{self.log[-2000:]}") from None
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        procs.stop(self.proc, 5)

    def _certificate(self) -> tuple[Path, Path]:
        """A self-signed ECDSA certificate for `host` (a day long), its key in a 0600 file."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "basement test TURN")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(self.host))]),
                               critical=False)
                .sign(key, hashes.SHA256()))
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        self.spki_sha256 = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        cert_path, key_path = self.workdir / "turn-cert.pem", self.workdir / "turn-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return cert_path, key_path


def _spawn(conf: Path) -> subprocess.Popen:
    return subprocess.Popen(["turnserver", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
