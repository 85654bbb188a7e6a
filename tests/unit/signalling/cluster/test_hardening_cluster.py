"""Issue #11, cluster part: the Redis bus and store take hostile bytes without dying or losing the
legitimate traffic next to them, bound what they hold, and Redis can require a password (never in
argv or logs) and TLS. Everything runs against a real redis-server on 127.0.0.1."""

from __future__ import annotations

import secrets

import pytest

from signalling import config
from signalling.cluster.redisconn import redact_url, target_from_settings

PASSWORD = "pw-" + secrets.token_hex(12)


def test_redis_password_settings_come_from_env_or_file_and_stay_out_of_urls(tmp_path):
    f = tmp_path / "pw"
    f.write_text(PASSWORD + "\n")
    t = target_from_settings(config.load(env={"BASEMENT_REDIS_URL": "redis://r:6379/0",
                                              "BASEMENT_REDIS_PASSWORD_FILE": str(f)}))
    assert t.password == PASSWORD and t.options() == {"password": PASSWORD}
    t = target_from_settings(config.load(env={"BASEMENT_REDIS_URL": "rediss://r:6380/0",
                                              "BASEMENT_REDIS_PASSWORD": PASSWORD,
                                              "BASEMENT_REDIS_SSL_CA_CERTS": "/ca.pem"}))
    assert t.options() == {"password": PASSWORD, "ssl_ca_certs": "/ca.pem"}
    problems = {
        "redis_password: the Redis URL carries a password too": {"BASEMENT_REDIS_URL": "redis://:a@r/0",
                                                                "BASEMENT_REDIS_PASSWORD": "b"},
        "redis_password / redis_password_file: set one": {"BASEMENT_REDIS_URL": "redis://r/0",
                                                          "BASEMENT_REDIS_PASSWORD": "b",
                                                          "BASEMENT_REDIS_PASSWORD_FILE": str(f)},
        "redis_password_file: cannot read": {"BASEMENT_REDIS_URL": "redis://r/0",
                                             "BASEMENT_REDIS_PASSWORD_FILE": str(tmp_path / "none")},
        "redis_ssl_ca_certs: only used with a rediss://": {"BASEMENT_REDIS_URL": "redis://r/0",
                                                           "BASEMENT_REDIS_SSL_CA_CERTS": "/ca.pem"},
        "redis_url: scheme 'http'": {"BASEMENT_REDIS_URL": "http://r/0"},
    }
    for message, env in problems.items():
        with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
            target_from_settings(config.load(env=env))
    assert redact_url("redis://:hunter2@r:6379/0") == "redis://:***@r:6379/0"
    assert redact_url("rediss://app:hunter2@r:6380/1?x=1") == "rediss://app:***@r:6380/1?x=1"
    assert redact_url("redis://hunter2@r/0") == "redis://***@r/0"
    assert redact_url("redis://r:6379/0") == "redis://r:6379/0"
