"""TURN REST API credentials (coturn checks them for real in tests/e2e/browser/test_turn.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from signalling import config
from signalling.access.turn import TurnCredentials


def test_each_participant_gets_its_own_expiring_credentials():
    turn = TurnCredentials(["stun:stun.example.com:3478", "turn:turn.example.com:3478?transport=udp",
                            "turns:turn.example.com:443?transport=tcp"], "s3cret", 600)
    stun, relay = turn.ice_servers("PA_abc", now=1_700_000_000.7)
    assert stun == {"urls": ["stun:stun.example.com:3478"]}
    assert relay["urls"] == ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:443?transport=tcp"]
    assert relay["username"] == "1700000600:PA_abc"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1700000600:PA_abc", hashlib.sha1).digest()).decode()
    assert relay["credential"] == expected
    assert turn.ice_servers("PA_other", now=1_700_000_000)[1]["credential"] != expected


def test_no_servers_configured_means_none_handed_out():
    assert TurnCredentials([], "", 600).ice_servers("x") == []


def test_a_participant_id_cannot_move_the_expiry():
    # ':' ends the expiry in the username: nothing after it may carry one
    relay = TurnCredentials(["turn:t:3478"], "k", 60).ice_servers("9999999999:evil", now=0)[0]
    assert relay["username"] == "60:9999999999_evil"


@pytest.mark.parametrize("env, words", [
    ({"BASEMENT_TURN_URLS": "turn:t.example:3478"}, "turn_secret is not set"),
    ({"BASEMENT_TURN_URLS": "http://t.example", "BASEMENT_TURN_SECRET": "k"}, "is not a turn:"),
    ({"BASEMENT_TURN_URLS": "turn:t:1?transport=sctp", "BASEMENT_TURN_SECRET": "k"}, "is not a turn:"),
    ({"BASEMENT_TURN_CREDENTIAL_TTL_S": "5"}, "turn_credential_ttl_s"),
])
def test_turn_settings_are_checked(env, words):
    # (and --turn-secret is refused as a flag: tests/unit/signalling/test_config.py)
    with pytest.raises(config.ConfigError, match=words):
        config.load(env=env)
