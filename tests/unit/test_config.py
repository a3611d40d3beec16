from __future__ import annotations

from pathlib import Path

import pytest

from otszmq.config import Settings, child_flags, load_settings
from otszmq.errors import ConfigError
from otszmq.supervisor import build_children


def test_defaults():
    settings = load_settings({}, env={})
    assert settings.tcp_port == 8088
    assert settings.bind == "0.0.0.0"
    assert settings.data_dir == Path("otszmq-data")
    assert settings.worker_count >= 1
    assert settings.fanout_in_endpoint.startswith("ipc://")


def test_layers_flags_over_env_over_toml(tmp_path):
    toml = tmp_path / "otszmq.toml"
    toml.write_text('tcp_port = 1000\nbind = "127.0.0.2"\nworkers = 3\nidle-timeout = 5.5\n')
    env = {"OTSZMQ_TCP_PORT": "2000", "OTSZMQ_WORKERS": "4"}
    settings = load_settings({"tcp_port": "3000"}, env=env, config_file=toml)
    assert settings.tcp_port == 3000  # flag
    assert settings.workers == 4  # env
    assert settings.bind == "127.0.0.2"  # toml
    assert settings.idle_timeout == 5.5  # toml, dashed key
    assert settings.max_event_size == 1 << 20  # default


def test_config_file_from_environment(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("tcp_port = 1234\n")
    assert load_settings({}, env={"OTSZMQ_CONFIG": str(toml)}).tcp_port == 1234


@pytest.mark.parametrize(("flags", "env", "message"), [
    ({"tcp_port": "abc"}, {}, "tcp_port .*--tcp-port.*'abc'"),
    ({}, {"OTSZMQ_TCP_PORT": "99999"}, "tcp_port: must be a port number"),
    ({}, {"OTSZMQ_LOG_LEVEL": "loud"}, "log_level: must be one of"),
    ({"workers": "-1"}, {}, "workers: must be >= 0"),
    ({"max_event_size": "10"}, {}, "max_event_size"),
    ({"fanout_in": "http://x"}, {}, "fanout_in: must be a tcp:// or ipc://"),
    ({"store_priority": "high"}, {}, "store_priority: must be one of idle, low, normal"),
    ({}, {"OTSZMQ_STORE": "maybe"}, "store .*expected true or false"),
])
def test_bad_values_name_the_setting(flags, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, env=env)


def test_bad_toml_is_reported(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("tcp_port = [\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings({}, env={}, config_file=toml)
    toml.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'no_such_setting'"):
        load_settings({}, env={}, config_file=toml)
    toml.write_text("tcp_port = true\n")
    with pytest.raises(ConfigError, match="tcp_port"):
        load_settings({}, env={}, config_file=toml)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({}, env={}, config_file=tmp_path / "absent.toml")


def test_too_long_data_dir_for_ipc_is_refused():
    with pytest.raises(ConfigError, match="too long for ipc"):
        load_settings({"data_dir": "/tmp/" + "d" * 120}, env={})


def test_child_flags_round_trip():
    settings = load_settings({"work_endpoints": "tcp://a:1, tcp://b:2"}, env={})
    assert settings.work_endpoints == ("tcp://a:1", "tcp://b:2")
    argv = child_flags(settings, ["work_endpoints", "tcp_port"])
    assert argv == ["--work-endpoints", "tcp://a:1,tcp://b:2", "--tcp-port", "8088"]
    assert isinstance(Settings(), Settings)


def test_only_the_first_ingest_binds_the_inject_endpoint() -> None:
    settings = load_settings({"workers": "1", "ingest_processes": "3"}, env={})
    flags = {child.name: child.argv[child.argv.index("--inject") + 1]
             for child in build_children(settings) if child.name.startswith("ingest")}
    assert flags == {"ingest-0": "true", "ingest-1": "false", "ingest-2": "false"}
