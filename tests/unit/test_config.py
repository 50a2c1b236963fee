"""Node configuration: defaults < TOML < FERRYMQ_* environment < command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferrymq.protocols.mqtt.broker import MQTTSettings
from ferrymq.server.config import ConfigError, load_config


def test_sources_override_in_order(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('amqp_port = 1000\nframe_max = 8192\nfsync = "interval"\n')
    config = load_config(
        path, {"amqp_port": 3000}, {"FERRYMQ_AMQP_PORT": "2000", "FERRYMQ_CHANNEL_MAX": "9"}
    )
    assert config.amqp_port == 3000  # command line wins
    assert config.settings.frame_max == 8192  # from the file
    assert config.settings.channel_max == 9  # from the environment
    assert config.fsync == "interval"


def test_mqtt_settings_reach_the_adapter() -> None:
    config = load_config(
        None,
        None,
        {"FERRYMQ_MQTT_MAX_INFLIGHT": "20", "FERRYMQ_MQTT_ALLOW_ANONYMOUS": "false"},
    )
    mqtt = MQTTSettings.from_settings(config.settings)
    assert (mqtt.max_inflight, mqtt.allow_anonymous) == (20, False)
    assert mqtt.exchange == "amq.topic"  # unset: the adapter's default


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FERRYMQ_MQTT_ALLOW_ANONYMOUS": "maybe"}, "must be bool"),
        ({"FERRYMQ_FRAME_MAX": "big"}, "must be int"),
        ({"FERRYMQ_FSYNC": "sometimes"}, "fsync must be always, interval or off"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, None, env)
