from __future__ import annotations

from pathlib import Path

import pytest

from signalling import cli, config, configdoc


def test_docs_list_every_setting_exactly_as_generated():
    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert doc.read_text() == configdoc.render(), "run: python -m signalling.configdoc > docs/configuration.md"


def test_defaults_are_safe():
    s = config.load(env={})
    assert s.host == "127.0.0.1" and s.metrics_host == "127.0.0.1"
    assert s.admin_key == "" and s.grant_secret == "" and s.writer_key == ""
    assert s.ice_addresses == ["127.0.0.1"]


def test_cli_beats_environment_beats_default():
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "--port", "9001", "--ice-addresses", "127.0.0.1,::1"])
    s = config.load(args, env={"BASEMENT_PORT": "9000", "BASEMENT_LOG_LEVEL": "debug", "BASEMENT_REQUIRE_AUTH": "yes"})
    assert s.port == 9001
    assert s.log_level == "debug"
    assert s.require_auth is True
    assert s.ice_addresses == ["127.0.0.1", "::1"]


@pytest.mark.parametrize("env,words", [
    ({"BASEMENT_PORT": "eighty"}, "BASEMENT_PORT"),
    ({"BASEMENT_PORT": "70000"}, "port"),
    ({"BASEMENT_LOG_LEVEL": "loud"}, "log_level"),
    ({"BASEMENT_CHAIN": "rpc"}, "rpc_url"),
    ({"BASEMENT_RTP_PORT_MIN": "50000"}, "rtp_port"),
    ({"BASEMENT_REQUIRE_AUTH": "maybe"}, "BASEMENT_REQUIRE_AUTH"),
])
def test_bad_values_name_the_setting(env, words):
    with pytest.raises(config.ConfigError) as e:
        config.load(env=env)
    assert words in str(e.value)


def test_basement_serve_reports_config_errors_without_a_traceback(capsys):
    assert cli.main(["serve", "--port", "nope"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "--port" in err
