from __future__ import annotations

import dataclasses
import subprocess
import sys
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


def test_the_command_line_is_built_without_the_heavy_libraries():
    """Every `basement` command (sfu, signal, bench, sessions, serve) builds the whole parser first.
    web3 costs ~1.7 s of CPU to import and aiortc ~0.4 s; the commands that use them import them."""
    probe = ("import sys; from signalling import cli; cli.build_parser(); "
             "print(sorted(m for m in ('web3', 'eth_account', 'aiortc', 'py_ecc') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("env,words", [
    ({"BASEMENT_PORT": "eighty"}, "BASEMENT_PORT"),
    ({"BASEMENT_PORT": "70000"}, "port"),
    ({"BASEMENT_LOG_LEVEL": "loud"}, "log_level"),
    ({"BASEMENT_CHAIN": "rpc"}, "rpc_url"),
    ({"BASEMENT_RTP_PORT_MIN": "50000"}, "rtp_port"),
    ({"BASEMENT_REQUIRE_AUTH": "maybe"}, "BASEMENT_REQUIRE_AUTH"),
    ({"BASEMENT_DATA_MAX_MESSAGE_BYTES": "300000"}, "data_max_message_bytes"),
    ({"BASEMENT_DATA_ROOM_RATE": "0"}, "data_room_rate: rates above 0"),
    ({"BASEMENT_DATA_HISTORY": "5000"}, "data_history"),
    ({"BASEMENT_TLS": "on"}, "tls: 'on' is not 'self-signed'"),
    ({"BASEMENT_ICE_TCP_PORT": "70000"}, "ice_tcp_port: 70000 is not a TCP port"),
    ({"BASEMENT_ICE_TCP_PORT": "8080"}, "ice_tcp_port: 8080 is also the HTTP or metrics port"),
    ({"BASEMENT_WORKERS": "two"}, "workers: 'two' is not 'auto' or a number from 1 to 256"),
    ({"BASEMENT_WORKERS": "0"}, "workers: '0'"),
    ({"BASEMENT_WORKERS": "257"}, "workers: '257'"),
    ({"BASEMENT_WORKERS": "4", "BASEMENT_ICE_UDP_PORT": "65534"}, "ice_udp_port: 4 workers use ports 65534-65537"),
    ({"BASEMENT_WORKERS": "3", "BASEMENT_RTP_PORT_MIN": "50000", "BASEMENT_RTP_PORT_MAX": "50004"},
     "each needs at least 2 ports"),
])
def test_bad_values_name_the_setting(env, words):
    with pytest.raises(config.ConfigError) as e:
        config.load(env=env)
    assert words in str(e.value)


@pytest.mark.parametrize("ranges", [
    ["auto"], ["auto", "10.0.0.0/8"], [" 10.1.2.3 ", "", "fd00::/8"], ["192.168.1.7/24"], ["::ffff:10.0.0.1"], [],
    ["10.0.0.0/33"], ["auto", "nope"], ["AUTO"], ["10.0.0.0/8/8"], ["fe80::1%eth0"], ["any"], ["1.2.3.4/-1"],
])
def test_ice_ranges_are_checked_as_the_media_plane_parses_them(ranges):
    """Settings check `ice_allowed_ranges` without importing sfu: both accept and refuse alike, in the same words."""
    from sfu.candidates import parse_ranges

    try:
        parse_ranges(ranges)
        media_says = None
    except ValueError as e:
        media_says = f"ice_allowed_ranges: {e}"
    try:
        dataclasses.replace(config.Settings(), ice_allowed_ranges=ranges).validate()
        config_says = None
    except config.ConfigError as e:
        config_says = str(e)
    assert config_says == media_says


def test_basement_serve_reports_config_errors_without_a_traceback(capsys):
    assert cli.main(["serve", "--port", "nope"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "--port" in err


@pytest.mark.parametrize("flag", ["--admin-key", "--grant-secret", "--writer-key", "--turn-secret"])
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


def test_a_pinning_service_needs_an_ipfs_node_and_a_token_from_env_or_a_file(tmp_path):
    svc = {"BASEMENT_IPFS_PIN_SERVICE": "https://api.pinata.cloud/psa"}
    with pytest.raises(config.ConfigError, match="ipfs_pin_service: needs ipfs_api .* and ipfs_pin_token"):
        config.load(env={**svc, "BASEMENT_IPFS_API": "http://127.0.0.1:5001"})
    with pytest.raises(config.ConfigError, match="ipfs_pin_service: needs ipfs_api"):
        config.load(env={**svc, "BASEMENT_IPFS_PIN_TOKEN": "t"})
    with pytest.raises(config.ConfigError, match="is not an http"):
        config.load(env={"BASEMENT_IPFS_PIN_SERVICE": "pinata", "BASEMENT_IPFS_API": "http://127.0.0.1:5001",
                         "BASEMENT_IPFS_PIN_TOKEN": "t"})
    token = tmp_path / "pin.token"
    token.write_text("tok-from-file\n")
    s = config.load(env={**svc, "BASEMENT_IPFS_API": "http://127.0.0.1:5001",
                         "BASEMENT_IPFS_PIN_TOKEN_FILE": str(token)})
    assert (s.ipfs_pin_service, s.ipfs_pin_token) == ("https://api.pinata.cloud/psa", "tok-from-file")


def test_access_limits_have_safe_defaults():
    s = config.load(env={})
    assert s.signin_ttl_s == 900 and s.max_seats_per_identity == 1 and s.record_sessions == "gated"
    assert s.auth_rate_per_min == 30 and s.auth_nonces_per_address == 5
    for env in ({"BASEMENT_SIGNIN_TTL_S": "0"}, {"BASEMENT_MAX_SEATS_PER_IDENTITY": "-1"},
                {"BASEMENT_RECORD_MIN_DURATION_S": "-5"}):
        with pytest.raises(config.ConfigError, match=next(iter(env))[len("BASEMENT_"):].lower()):
            config.load(env=env)


# ---------------------------------------------------------------- settings groups per subcommand

def _subparsers(parser, path=()):
    """(command path, parser) for every leaf subcommand of `basement`."""
    import argparse

    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield " ".join(path), parser
        return
    for name, sub in actions[0].choices.items():
        yield from _subparsers(sub, (*path, name))


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_every_setting_has_a_group_and_every_group_a_reader():
    import dataclasses

    for f in dataclasses.fields(config.Settings):
        assert f.metadata.get("group") in config.GROUPS, f.name
    read = {g for groups in config.SUBCOMMAND_GROUPS.values() for g in groups}
    assert read == set(config.GROUPS)


def test_every_subcommand_declares_the_settings_groups_it_reads():
    leaves = dict(_subparsers(cli.build_parser()))
    assert set(leaves) == set(config.SUBCOMMAND_GROUPS)
    for name, parser in leaves.items():
        assert parser.get_default("settings_groups") == config.SUBCOMMAND_GROUPS[name], name


def test_basement_sfu_offers_only_the_settings_it_reads(capsys):
    out = _help(["sfu"], capsys)
    assert "--ice-addresses" in out and "--redis-url" in out and "--drain-timeout-s" in out
    for flag in ("--grant-ttl-s", "--admin-key-file", "--require-auth", "--rpc-url", "--public-url", "--data-dir"):
        assert flag not in out, flag
    signal = _help(["signal"], capsys)
    assert "--grant-ttl-s" in signal and "--ice-addresses" not in signal and "--drain-timeout-s" not in signal
    sessions = _help(["sessions", "list"], capsys)
    assert "--rpc-url" in sessions and "--port" not in sessions and "--grant-ttl-s" not in sessions


def test_a_flag_of_a_group_the_subcommand_does_not_read_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["sfu", "--grant-ttl-s", "5"])
    assert e.value.code == 2
    assert "unrecognized arguments: --grant-ttl-s" in capsys.readouterr().err


def test_basement_serve_takes_an_access_flag():
    args = cli.build_parser().parse_args(["serve", "--grant-ttl-s", "5", "--port", "0"])
    s = config.load(args, env={})
    assert s.grant_ttl_s == 5 and s.port == 0


def test_environment_applies_to_the_groups_a_subcommand_reads_only():
    env = {"BASEMENT_RETRANSMIT_BUDGET": "0.25", "BASEMENT_REDIS_URL": "redis://r:6379/0",
           "BASEMENT_GRANT_TTL_S": "7", "BASEMENT_CHAIN": "rpc"}  # chain=rpc without rpc_url: invalid
    sfu = config.load(cli.build_parser().parse_args(["sfu"]), env=env)
    assert sfu.retransmit_budget == 0.25 and sfu.redis_url == "redis://r:6379/0"
    assert sfu.grant_ttl_s == 300 and sfu.chain == "embedded"  # not read: defaults
    with pytest.raises(config.ConfigError, match="rpc_url"):
        config.load(cli.build_parser().parse_args(["signal"]), env=env)
    ok = config.load(cli.build_parser().parse_args(["signal"]), env={**env, "BASEMENT_RPC_URL": "http://n:8545"})
    assert ok.grant_ttl_s == 7 and ok.retransmit_budget == 0.5


def test_main_loads_settings_and_sets_up_logging_for_every_subcommand(monkeypatch):
    seen = {}

    def fake_serve(args, settings):
        seen["serve"] = settings.grant_ttl_s
        return 0

    monkeypatch.setenv("BASEMENT_LOG_LEVEL", "debug")
    monkeypatch.setattr(cli, "setup_logging", lambda settings: seen.setdefault("logging", settings.log_level))
    monkeypatch.setattr(cli, "cmd_serve", fake_serve)  # build_parser (called by main) picks it up
    assert cli.main(["serve", "--grant-ttl-s", "9"]) == 0
    assert seen == {"logging": "debug", "serve": 9}


def test_the_chain_writer_is_a_sessions_subcommand_reading_settings(tmp_path, monkeypatch):
    key_file = tmp_path / "writer.key"
    key_file.write_text("0x" + "11" * 32 + "\n")
    args = cli.build_parser().parse_args([
        "sessions", "writer", "--rpc-url", "http://127.0.0.1:8545", "--session-log", "0x" + "22" * 20,
        "--writer-key-file", str(key_file), "--writer-batch-size", "4", "--outbox", str(tmp_path / "o.db")])
    s = config.load(args, env={"BASEMENT_DATA_DIR": str(tmp_path), "BASEMENT_GRANT_TTL_S": "nonsense"})
    assert s.session_log_address == "0x" + "22" * 20 and s.writer_key == "0x" + "11" * 32
    assert s.writer_batch_size == 4 and s.data_dir == str(tmp_path) and args.outbox == str(tmp_path / "o.db")
    assert args.func.__name__ == "run_writer"
    for name in ("BASEMENT_WRITER_KEY", "BASEMENT_WRITER_KEY_FILE", "BASEMENT_RPC_URL"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["sessions", "writer", "--session-log-address", "0x" + "22" * 20]) == 2


def test_workers_auto_is_the_cores_this_process_may_use(tmp_path):
    import os

    assert config.load(env={"BASEMENT_WORKERS": "auto"}).worker_count == min(len(os.sched_getaffinity(0)),
                                                                              config._cgroup_cpus())
    # a cgroup CPU quota (a container's limit) rounds up to whole CPUs; none, or unreadable: no limit
    for text, cpus in (("150000 100000", 2), ("100000 100000", 1), ("50000 100000", 1), ("max 100000", 1 << 16),
                       ("garbage", 1 << 16)):
        (tmp_path / "cpu.max").write_text(text + "\n")
        assert config._cgroup_cpus(str(tmp_path / "cpu.max")) == cpus, text
    assert config._cgroup_cpus(str(tmp_path / "absent")) == 1 << 16
    with pytest.raises(config.ConfigError, match="workers: '²'"):
        config.load(env={"BASEMENT_WORKERS": "²"})
    assert config.load(env={"BASEMENT_WORKERS": " 3 "}).worker_count == 3
    # the default: every core this process may use (one: the SFU inside the server process)
    assert config.load(env={}).workers == "auto"
    assert config.load(env={}).worker_count == config.load(env={"BASEMENT_WORKERS": "auto"}).worker_count >= 1
    assert config.load(env={"BASEMENT_WORKERS": "1"}).worker_count == 1


def test_a_cluster_media_node_reads_the_room_settings_it_applies():
    """Presence batching and the speaker interval are applied by the node hosting the room, so
    `basement sfu` must read them (it once silently kept the defaults)."""
    env = {"BASEMENT_PRESENCE_BATCH_ABOVE": "5", "BASEMENT_PRESENCE_INTERVAL_MS": "250",
           "BASEMENT_SPEAKER_INTERVAL_MS": "300"}
    s = config.load(env=env, groups=config.SUBCOMMAND_GROUPS["sfu"])
    assert (s.presence_batch_above, s.presence_interval_ms, s.speaker_interval_ms) == (5, 250, 300)
