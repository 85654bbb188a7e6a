"""Build of the native data path (`sfu._native`); everything else is declared in pyproject.toml.

The extension needs only what a Debian image with Python headers and libssl-dev has: gcc and
OpenSSL's libcrypto. BASEMENT_SANITIZE=1 builds it with ASan/UBSan (`make native-asan`).
"""

import os

from setuptools import Extension, setup

SOURCES = ["sfu/native/module.c", "sfu/native/srtp.c", "sfu/native/aes_gcm.c", "sfu/native/srtp_session.c",
           "sfu/native/forward.c", "sfu/native/remb.c",
           "sfu/native/parse.c", "sfu/native/reception.c", "sfu/native/media_socket.c", "sfu/native/ingress.c",
           "sfu/native/layer.c", "sfu/native/traffic.c", "sfu/native/packet_ring.c",
           "sfu/native/gso.c", "sfu/native/transport_seq.c", "sfu/native/transport_arrivals.c",
           "sfu/native/pacer.c"]
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
          "-fno-strict-aliasing",
          # remb.c must compute every double exactly as its Python twin does: no fused multiply-add
          "-ffp-contract=off"]
LDFLAGS: list[str] = []
if os.environ.get("BASEMENT_SANITIZE"):
    # -fno-wrapv: Python's own flags make signed overflow wrap, which would hide it from UBSan;
    # float-cast-overflow is not part of -fsanitize=undefined
    CFLAGS += ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv", "-fsanitize=address,undefined,float-cast-overflow",
               "-fno-sanitize-recover=undefined,float-cast-overflow"]
    LDFLAGS += ["-fsanitize=address,undefined,float-cast-overflow"]

setup(
    ext_modules=[
        Extension(
            "sfu._native",
            sources=SOURCES,
            depends=["sfu/native/srtp.h", "sfu/native/forward.h", "sfu/native/aes_gcm.h"],
            libraries=["crypto"],
            extra_compile_args=CFLAGS,
            extra_link_args=LDFLAGS,
        )
    ]
)
