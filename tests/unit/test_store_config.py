"""Unit tests of the store's settings (otszmq.config) and how the entry point reads them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from otszmq.config import load_settings
from otszmq.errors import ConfigError
from otszmq.store.main import config_from


def test_defaults():
    settings = load_settings({}, env={})
    assert settings.store_database_url == f"sqlite:///{Path('otszmq-data').resolve()}/otszmq.db"
    assert settings.store_raw_xml is True
    config = config_from(settings, "store-1")
    assert config.retention.points == timedelta(days=7)
    assert config.retention.cot == timedelta(days=7)
    assert config.retention.chat == timedelta(days=30)
    assert (config.batch_size, config.flush_interval, config.queue_limit) == (2000, 0.1, 50_000)
    assert config.work_slice == 0.001


def test_layers_and_conversions(tmp_path):
    toml = tmp_path / "otszmq.toml"
    toml.write_text("store_raw_xml = false\npoints_retention_days = 0\n")
    env = {"OTSZMQ_DATABASE_URL": "postgresql://u:p@db/ots", "OTSZMQ_STORE_BATCH_SIZE": "50"}
    settings = load_settings({"chat_retention_days": "1.5"}, env=env, config_file=toml)
    assert settings.store_database_url == "postgresql://u:p@db/ots"
    assert settings.store_raw_xml is False
    config = config_from(settings, "s")
    assert config.retention.points is None  # 0: keep forever
    assert config.retention.chat == timedelta(days=1.5)
    assert config.batch_size == 50


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("off", False),
])
def test_booleans_from_flags_and_environment(text, value):
    assert load_settings({"store_raw_xml": text}, env={}).store_raw_xml is value
    assert load_settings({}, env={"OTSZMQ_STORE_RAW_XML": text}).store_raw_xml is value


@pytest.mark.parametrize(("flags", "message"), [
    ({"store_raw_xml": "perhaps"}, "store_raw_xml .*expected true or false"),
    ({"database_url": "mysql://root:hunter2@db/x"}, "database_url: must start with sqlite"),
    ({"store_queue_limit": "0"}, "store_queue_limit: must be >= 1"),
    ({"store_batch_size": "0"}, "store_batch_size: must be >= 1"),
    ({"store_flush_interval": "-1"}, "store_flush_interval: must be >= 0"),
    ({"store_work_slice": "-0.001"}, "store_work_slice: must be >= 0"),
    ({"cot_retention_days": "-1"}, "cot_retention_days: must be >= 0"),
    ({"store_prune_interval": "0"}, "store_prune_interval: must be > 0"),
])
def test_bad_values_name_the_setting(flags, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(flags, env={})
    assert "hunter2" not in str(raised.value)
