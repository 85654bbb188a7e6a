from __future__ import annotations

from pathlib import Path

import pytest

from signalling import cli, config, configdoc


def test_docs_list_every_setting_exactly_as_generated():
    doc = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
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


@pytest.mark.parametrize("flag", ["--admin-key", "--grant-secret", "--writer-key"])
def test_secrets_are_refused_as_command_line_flags(flag, capsys):
    assert cli.main(["serve", flag, "s3cret-value"]) == 2
    err = capsys.readouterr().err
    assert f"{flag}: secrets are not accepted as command-line flags" in err and "/proc/<pid>/cmdline" in err
    assert f"BASEMENT_{flag[2:].replace('-', '_').upper()}" in err and f"{flag}-file" in err
    assert "s3cret-value" not in err


def test_secrets_come_from_env_or_a_file(tmp_path):
    key_file = tmp_path / "admin.key"
    key_file.write_text("from-the-file-0123456789\n")
    args = cli.build_parser().parse_args(["serve", "--admin-key-file", str(key_file)])
    assert config.load(args, env={}).admin_key == "from-the-file-0123456789"
    assert config.load(env={"BASEMENT_ADMIN_KEY": "from-env"}).admin_key == "from-env"
    assert config.load(env={"BASEMENT_GRANT_SECRET_FILE": str(key_file)}).grant_secret == "from-the-file-0123456789"
    with pytest.raises(config.ConfigError, match="BASEMENT_WRITER_KEY and BASEMENT_WRITER_KEY_FILE are both set"):
        config.load(env={"BASEMENT_WRITER_KEY": "a", "BASEMENT_WRITER_KEY_FILE": str(key_file)})
    with pytest.raises(config.ConfigError, match="--admin-key-file: cannot read"):
        config.load(cli.build_parser().parse_args(["serve", "--admin-key-file", str(tmp_path / "nope")]), env={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(config.ConfigError, match="BASEMENT_ADMIN_KEY_FILE: .* is empty"):
        config.load(env={"BASEMENT_ADMIN_KEY_FILE": str(tmp_path / "empty")})


def test_access_limits_have_safe_defaults():
    s = config.load(env={})
    assert s.session_ttl_s == 900 and s.max_seats_per_identity == 1 and s.record_sessions == "gated"
    assert s.auth_rate_per_min == 30 and s.auth_nonces_per_address == 5
    for env in ({"BASEMENT_SESSION_TTL_S": "0"}, {"BASEMENT_MAX_SEATS_PER_IDENTITY": "-1"},
                {"BASEMENT_RECORD_MIN_DURATION_S": "-5"}):
        with pytest.raises(config.ConfigError, match=next(iter(env))[len("BASEMENT_"):].lower()):
            config.load(env=env)
