"""The config file: schema, validation messages that start with the key path, the committed
``config.yaml``, and ``gatekeeper --check-config``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper import cli
from gatekeeper.config import (
    ClassifierConfig,
    Config,
    DetectorConfig,
    JournalConfig,
    SourceConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)
from gatekeeper.config_doc import EXAMPLE_REQUIRED, render
from gatekeeper.errors import ConfigError, GatekeeperError
from gatekeeper.gate import GateConfig
from gatekeeper.hooks.config import (
    EVENT_NAMES,
    HOOK_TYPES,
    CommandHookConfig,
    GpioHookConfig,
    MqttHookConfig,
    WebhookHookConfig,
)

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the committed config.yaml -------------------------------------------------------------------


def test_committed_config_yaml_is_the_rendered_documentation() -> None:
    committed = (REPO / "config.yaml").read_text(encoding="utf-8")
    assert committed == render(), "config.yaml is stale: run `python -m gatekeeper.config_doc > config.yaml`"


def test_committed_config_yaml_loads_to_the_defaults() -> None:
    assert load_config(REPO / "config.yaml") == Config()


def test_rendered_documentation_names_every_key() -> None:
    text = render()
    defaults = config_to_dict(Config())
    sections = [name for name, value in defaults.items() if isinstance(value, dict)]
    assert {"source", "detector", "classifier", "gate", "journal"} <= set(sections)
    for section in sections:
        assert f"\n{section}:  # " in text, f"section {section} is not documented"
        for key in defaults[section]:
            assert f"\n  {key}: " in text, f"{section}.{key} is not documented"
    for kind, cls in HOOK_TYPES.items():
        assert f"#  - type: {kind}\n" in text
        for key in config_to_dict(cls(**EXAMPLE_REQUIRED.get(kind, {}))):
            assert key == "type" or f"\n#    {key}: " in text, f"hooks[type={kind}].{key} is not documented"


def test_documented_hook_examples_are_valid_entries() -> None:
    """Uncommenting the hook examples of config.yaml gives a valid config with every hook type."""
    lines = render().splitlines()
    start = lines.index("hooks: []")
    examples = [line[1:] for line in lines[start + 1 :] if line.startswith("#  ")]
    cfg = config_from_dict(yaml.safe_load("hooks:\n" + "\n".join(examples)))
    assert [type(h) for h in cfg.hooks] == [HOOK_TYPES[k] for k in sorted(HOOK_TYPES)]
    assert list(cfg.hooks) == [HOOK_TYPES[k](**EXAMPLE_REQUIRED.get(k, {})) for k in sorted(HOOK_TYPES)]


# -- bad configs ---------------------------------------------------------------------------------

BAD_CONFIGS = [
    # unknown keys
    pytest.param("bogus: 1\n", "bogus: unknown key", id="unknown top-level key"),
    pytest.param("gate:\n  hold_frame: 6\n", "gate.hold_frame: unknown key; expected one of", id="unknown nested key"),
    pytest.param("hooks:\n  - type: gpio\n    pinn: GPIO4\n", "hooks[0].pinn: unknown key", id="unknown key in a hook"),
    pytest.param("gate: {1: 2}\n", "gate.1: unknown key", id="a number as a key"),
    pytest.param("1: a\nfoo: b\n", ("1: unknown key", "foo: unknown key"), id="unknown keys of mixed types"),
    # wrong types
    pytest.param("gate: {hold_frames: six}\n", "gate.hold_frames: expected an integer >= 1, got 'six' (str)", id="string for int"),
    pytest.param("gate: {hold_frames: true}\n", "gate.hold_frames: expected an integer >= 1, got True (bool)", id="bool for int"),
    pytest.param("gate: {hold_frames: 6.0}\n", "gate.hold_frames: expected an integer", id="float for int"),
    pytest.param("gate: {cooldown_s: '3'}\n", "gate.cooldown_s: expected a number >= 0, got '3' (str)", id="string for number"),
    pytest.param("gate: {cooldown_s: false}\n", "gate.cooldown_s: expected a number", id="bool for number"),
    pytest.param("gate: {cooldown_s: [3]}\n", "gate.cooldown_s: expected a number", id="list for number"),
    pytest.param("source: {realtime: 1}\n", "source.realtime: expected true or false, got 1 (int)", id="int for bool"),
    pytest.param("source: {realtime: 'yes'}\n", "source.realtime: expected true or false", id="quoted string for bool"),
    pytest.param("name: 5\n", "name: expected a string, got 5 (int)", id="int for string"),
    pytest.param("detector: {model_path: [a, b]}\n", "detector.model_path: expected a string", id="list for an optional string"),
    pytest.param("gate: 6\n", "gate: expected a mapping of keys, got 6 (int)", id="scalar for a section"),
    # out of bounds
    pytest.param("gate: {hold_frames: 0}\n", "gate.hold_frames: expected a value >= 1, got 0", id="int below its minimum"),
    pytest.param("gate: {enter_threshold: 1.5}\n", "gate.enter_threshold: expected a value >= 0 and <= 1, got 1.5", id="above its maximum"),
    pytest.param("gate: {hold_seconds: 0}\n", "gate.hold_seconds: expected a value > 0, got 0.0", id="not above an exclusive minimum"),
    pytest.param("classifier: {threads: 65}\n", "classifier.threads: expected a value", id="threads above 64"),
    pytest.param("source: {width: 8}\n", "source.width: expected a value >= 16, got 8", id="optional int below its minimum"),
    pytest.param("hooks: [{type: mqtt, port: 70000}]\n", "hooks[0].port: expected a value", id="hook port out of range"),
    pytest.param("gate: {cooldown_s: .nan}\n", "gate.cooldown_s: expected a value >= 0, got nan", id="nan is not a number in bounds"),
    pytest.param("detector: {min_confidence: .nan}\n", "detector.min_confidence: expected a value", id="nan confidence"),
    # cross-field rules
    pytest.param("gate: {exit_threshold: 0.7}\n", "gate: thresholds must satisfy 0 <= exit_threshold <= enter_threshold", id="exit above enter"),
    pytest.param(
        "gate: {enter_threshold: 0.3, exit_threshold: 0.4}\n", "gate: thresholds must satisfy", id="enter below exit, both set"
    ),
    # null where not allowed
    pytest.param("gate: {enter_threshold: null}\n", "gate.enter_threshold: expected a number", id="null for a number"),
    pytest.param("name: null\n", "name: expected a string, got None", id="null for a string"),
    pytest.param("source: null\n", "source: expected a mapping of keys, got None", id="null for a section"),
    pytest.param("hooks: null\n", "hooks: expected a list, got None", id="null for the hooks list"),
    pytest.param("journal:\n  enabled:\n", "journal.enabled: expected true or false, got None", id="empty value for a bool"),
    # top level
    pytest.param("- gate\n- source\n", "config: expected a mapping of keys at the top level, got ['gate', 'source'] (list)", id="a list at top level"),
    pytest.param("just some text\n", "config: expected a mapping of keys at the top level", id="a string at top level"),
    # hooks
    pytest.param("hooks: {type: gpio}\n", "hooks: expected a list", id="hooks as a mapping"),
    pytest.param("hooks: [gpio]\n", "hooks[0]: expected a mapping with a 'type' key, got 'gpio' (str)", id="a hook that is a string"),
    pytest.param("hooks: [{type: sms}]\n", "hooks[0].type: expected one of 'command', 'gpio', 'mqtt', 'webhook', got 'sms' (str)", id="unknown hook type"),
    pytest.param("hooks: [{pin: GPIO4}]\n", "hooks[0].type: expected one of", id="hook without a type"),
    pytest.param("hooks: [{type: [gpio]}]\n", "hooks[0].type: expected one of", id="a list as the hook type"),
    pytest.param("hooks: [{type: gpio}, {type: webhook}]\n", "hooks[1]: url: required", id="second hook missing its url"),
    pytest.param("hooks: [{type: webhook, url: 'ftp://x'}]\n", "hooks[0]: url: expected an http:// or https:// URL", id="webhook with a bad url"),
    pytest.param("hooks: [{type: command}]\n", "hooks[0]: argv: expected a command", id="command without argv"),
    pytest.param("hooks: [{type: gpio, pin_factory: fake}]\n", "hooks[0].pin_factory: expected one of 'auto', 'mock'", id="bad literal"),
    pytest.param("hooks: [{type: mqtt, events: [OPEN, BOOM]}]\n", "hooks[0]: events: unknown event name 'BOOM'", id="unknown event name"),
    pytest.param("hooks: [{type: mqtt, events: OPEN}]\n", "hooks[0].events: expected a list", id="events not a list"),
    pytest.param("hooks: [{type: mqtt, events: [1]}]\n", "hooks[0].events[0]: expected a string", id="event name not a string"),
]


@pytest.mark.parametrize(("text", "prefix"), BAD_CONFIGS)
def test_bad_config_names_the_key(tmp_path: Path, text: str, prefix: str | tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert message.startswith(prefix), message
    assert "\n" not in message


BAD_FILES = [
    pytest.param(
        "name: gate\ngate:\n  hold_frames: 6\n   cooldown_s: 3\n", "is not valid YAML at line 4: mapping values are not allowed here", id="bad indentation"
    ),
    pytest.param("gate:\n\thold_frames: 6\n", "is not valid YAML at line 2: found character '\\t'", id="a tab"),
    pytest.param("name: gate\nhooks: [{type: gpio}\n", "is not valid YAML at line 3", id="unclosed bracket"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_invalid_yaml_names_the_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"config file {str(path)!r} "), str(info.value)
    assert expected in str(info.value)


def unreadable(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nope.yaml"
    if kind == "directory":
        return tmp_path
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    return path


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("missing", "does not exist; expected a YAML file", id="missing file"),
        pytest.param("directory", "cannot be read", id="a directory"),
        pytest.param("latin1", "cannot be read", id="not UTF-8"),
    ],
)
def test_unreadable_config_file(tmp_path: Path, kind: str, expected: str) -> None:
    path = unreadable(tmp_path, kind)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(f"config file {str(path)!r} ")


def test_config_error_is_a_value_error_and_a_gatekeeper_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"bogus": 1})
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, GatekeeperError)


# -- good configs --------------------------------------------------------------------------------

GOOD_CONFIGS = [
    pytest.param("", Config(), id="empty file"),
    pytest.param("# nothing but a comment\n", Config(), id="only comments"),
    pytest.param("gate: {}\nhooks: []\n", Config(), id="empty sections"),
    pytest.param("gate:\n  hold_frames: 3\n", Config(gate=GateConfig(hold_frames=3)), id="one key of a section"),
    pytest.param(
        "gate:\n  enter_threshold: 0.7\n  exit_threshold: 0.7\n",
        Config(gate=GateConfig(enter_threshold=0.7, exit_threshold=0.7)),
        id="exit equal to enter",
    ),
    pytest.param("gate: {hold_seconds: 0.5}\n", Config(gate=GateConfig(hold_seconds=0.5)), id="optional number set"),
    pytest.param("source: {width: 640, height: null}\n", Config(source=SourceConfig(width=640)), id="optional int set and null"),
    pytest.param("source: {max_reconnects: 0}\n", Config(source=SourceConfig(max_reconnects=0)), id="zero at an inclusive minimum"),
    pytest.param(
        "name: entry-2\ndetector: {model_path: /models/face.tflite, download: false}\nclassifier: {threads: 4}\njournal: {enabled: false}\n",
        Config(
            name="entry-2",
            detector=DetectorConfig(model_path="/models/face.tflite", download=False),
            classifier=ClassifierConfig(threads=4),
            journal=JournalConfig(enabled=False),
        ),
        id="several sections",
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_CONFIGS)
def test_good_config(tmp_path: Path, text: str, expected: Config) -> None:
    assert load_config(write(tmp_path, text)) == expected


def test_partial_section_overrides_only_its_keys(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "gate:\n  cooldown_s: 5\nsource:\n  realtime: true\n"))
    got, default = config_to_dict(cfg), config_to_dict(Config())
    changed = {
        (section, key)
        for section, values in got.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if value != default[section][key]
    }
    assert changed == {("gate", "cooldown_s"), ("source", "realtime")}
    assert cfg.gate.cooldown_s == 5.0 and isinstance(cfg.gate.cooldown_s, float)


def test_an_int_for_a_number_becomes_a_float(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "gate: {enter_threshold: 1, exit_threshold: 0, deny_after_s: 10}\n"))
    assert [type(v) for v in (cfg.gate.enter_threshold, cfg.gate.exit_threshold, cfg.gate.deny_after_s)] == [float] * 3


HOOKS_YAML = """\
hooks:
  - type: gpio
    pin: GPIO4
    active_high: false
    pin_factory: mock
  - type: webhook
    url: http://127.0.0.1:8080/events
    events: [OPEN, DENY]
  - type: mqtt
    host: broker.local
    port: 8883
    topic_prefix: site/a
  - type: command
    argv: [/usr/bin/logger, -t, gate]
    name: log
"""


def test_hooks_list_is_parsed_into_the_right_dataclasses(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, HOOKS_YAML))
    assert cfg.hooks == (
        GpioHookConfig(pin="GPIO4", active_high=False, pin_factory="mock"),
        WebhookHookConfig(url="http://127.0.0.1:8080/events", events=("OPEN", "DENY")),
        MqttHookConfig(host="broker.local", port=8883, topic_prefix="site/a"),
        CommandHookConfig(argv=("/usr/bin/logger", "-t", "gate"), name="log"),
    )
    assert isinstance(cfg.hooks, tuple)
    assert isinstance(cfg.hooks[3].argv, tuple)
    assert cfg.hooks[2].events == EVENT_NAMES


def test_load_config_none_gives_the_defaults() -> None:
    assert load_config(None) == Config()


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(Config(), id="defaults"),
        pytest.param(
            Config(name="x", gate=GateConfig(hold_seconds=0.4), hooks=(CommandHookConfig(argv=("true",)), MqttHookConfig())),
            id="with hooks",
        ),
    ],
)
def test_config_to_dict_round_trips_as_plain_data(cfg: Config) -> None:
    data = config_to_dict(cfg)
    assert json.loads(json.dumps(data)) == data  # plain lists, dicts and scalars only
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(data))) == cfg


# -- gatekeeper --check-config -------------------------------------------------------------------


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Call ``cli.main(argv)`` in an empty working directory; returns (status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    # main() sets these with os.environ.setdefault; setting them here restores them afterwards.
    monkeypatch.setenv("GLOG_minloglevel", "2")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")

    def run(argv: list[str]) -> tuple[int, str, str]:
        status = cli.main(argv)
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_check_config_prints_the_effective_values(tmp_path: Path, run_cli: Any) -> None:
    path = write(tmp_path, "gate:\n  hold_frames: 3\n" + HOOKS_YAML, name="site.yaml")
    status, out, err = run_cli(["--check-config", "--config", str(path)])
    assert (status, err) == (0, "")
    printed = yaml.safe_load(out)
    assert printed == config_to_dict(load_config(path))
    assert printed["gate"]["hold_frames"] == 3
    assert printed["gate"]["cooldown_s"] == 3.0  # defaults are printed too
    assert [h["type"] for h in printed["hooks"]] == ["gpio", "webhook", "mqtt", "command"]


def test_check_config_masks_secrets(tmp_path: Path, run_cli: Any) -> None:
    secret = "whsec_" + "QUFB" * 8  # 24 bytes, base64
    token = "a-token-of-24-characters"
    path = write(
        tmp_path,
        f"http: {{token: {token}}}\nhooks:\n  - {{type: webhook, url: 'http://127.0.0.1:9/e', secret: '{secret}'}}\n",
        name="secret.yaml",
    )
    status, out, _ = run_cli(["--check-config", "--config", str(path)])
    assert status == 0
    printed = yaml.safe_load(out)
    assert printed["http"]["token"] == "<redacted>"
    assert printed["hooks"][0]["secret"] == "<redacted>"
    assert secret not in out and token not in out
    assert load_config(path).hooks[0].secret == secret  # masked in the output only


@pytest.mark.parametrize(
    ("present", "expected_hold"),
    [pytest.param(True, 9, id="./config.yaml is read"), pytest.param(False, 6, id="built-in defaults without one")],
)
def test_check_config_without_config_option(tmp_path: Path, run_cli: Any, present: bool, expected_hold: int) -> None:
    if present:
        write(tmp_path, "gate: {hold_frames: 9}\n")
    status, out, _ = run_cli(["--check-config"])
    assert status == 0
    assert yaml.safe_load(out)["gate"]["hold_frames"] == expected_hold


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("gate:\n  hold_frames: six\n", "gatekeeper: error: gate.hold_frames: expected an integer", id="wrong type"),
        pytest.param("bogus: 1\n", "gatekeeper: error: bogus: unknown key", id="unknown key"),
        pytest.param("gate: [\n", "gatekeeper: error: config file ", id="invalid YAML"),
        pytest.param("hooks: [{type: [gpio]}]\n", "gatekeeper: error: hooks[0].type: expected one of", id="unhashable hook type"),
        pytest.param(None, "gatekeeper: error: config file ", id="missing file"),
    ],
)
def test_check_config_with_a_bad_config(tmp_path: Path, run_cli: Any, text: str | None, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    status, out, err = run_cli(["--check-config", "--config", str(path)])
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(expected)
    assert "Traceback" not in err
