"""The web client's SFrame (signalling/web/static/sframe.js, on node's WebCrypto, the API browsers
have) against RFC 9605's test vectors, and against the Python one: each decrypts the other's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from signalling.e2ee.sframe import SUITES, Keyring, SendKey

HERE = Path(__file__).parent
VECTORS = json.loads((HERE / "rfc9605_vectors.json").read_text())


@pytest.mark.parametrize("suite", [1, 4, 5])
def test_the_web_client_s_sframe_matches_the_rfc_and_the_python_one(suite):
    node = shutil.which("node")
    assert node, "node is installed by `make test` (make node-deps)"
    base_key = os.urandom(16)
    frame, metadata = os.urandom(900), b"\x90\x80\x00\x9d\x01\x2a"  # (what a VP8 key frame keeps clear)
    sender = SendKey(3, base_key, SUITES[suite])
    sender.ctr = 2**40 + 5
    cross = {"suite": suite, "kid": 3, "base_key": base_key.hex(), "metadata": metadata.hex(), "pt": frame.hex(),
             "ct": sender.encrypt(frame, metadata).hex()}
    # (KIDs and CTRs go as strings: a JSON number loses the low bits of 2^64 - 1 in JavaScript)
    vectors = {**VECTORS, **{k: [{**v, "kid": str(v["kid"]), "ctr": str(v["ctr"])} for v in VECTORS[k]]
                             for k in ("header", "sframe")}}
    run = subprocess.run([node, str(HERE / "sframe_node.mjs")], input=json.dumps({"vectors": vectors, "cross": cross}),
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    assert out["header"] == [h["encoded"] for h in VECTORS["header"]]
    assert out["parsed"] == [[str(h["kid"]), str(h["ctr"]), len(h["encoded"]) // 2] for h in VECTORS["header"]]
    assert out["aead"] == [{"ct": a["ct"], "pt": a["pt"]} for a in VECTORS["aes_ctr_hmac"]]
    assert out["sframe"] == [{"key": s["sframe_key"], "salt": s["sframe_salt"], "nonce": s["nonce"], "ct": s["ct"],
                              "kid": str(s["kid"]), "pt": s["pt"]} for s in VECTORS["sframe"]]

    assert out["cross"]["pt"] == frame.hex()  # node decrypted what Python encrypted
    assert out["cross"]["forgery"].startswith("SFrameError: the SFrame ciphertext does not authenticate")
    ring = Keyring(SUITES[suite])
    ring.add(4, base_key)
    first, second = (bytes.fromhex(ct) for ct in out["cross"]["ct"])
    assert first != second  # each frame its own counter, so its own nonce
    assert ring.decrypt(first, metadata) == (4, frame) == ring.decrypt(second, metadata)
