"""The config file: schema, validation messages that start with the key path, the committed
``config.yaml``, and ``gatekeeper --check-config``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper import cli
from gatekeeper.config import (
    ClassifierConfig,
    Config,
    DetectorConfig,
    HttpConfig,
    JournalConfig,
    SourceConfig,
)
from gatekeeper.config_doc import EXAMPLE_REQUIRED, render
from gatekeeper.config_load import config_from_dict, load_config
from gatekeeper.config_values import config_to_dict
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
from gatekeeper.redact import redact_text
from gatekeeper.schema import DURATION_UNITS, MAX_DURATION_S

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
    # operator actions
    pytest.param("hooks: [{type: mqtt, commands: yes please}]\n", "hooks[0].commands: expected true or false, got 'yes please' (str)", id="mqtt commands not a bool"),
    pytest.param("hooks: [{type: mqtt, command_max_age_s: 0}]\n", "hooks[0].command_max_age_s: expected a value > 0 and <= 3600, got 0.0", id="mqtt command_max_age_s 0"),
    pytest.param("gate: {manual_open_interval_s: -1}\n", "gate.manual_open_interval_s: expected a value >= 0, got -1.0", id="negative manual-open interval"),
    pytest.param("actions: {queue_size: 0}\n", "actions.queue_size: expected a value >= 1 and <= 1000, got 0", id="actions queue of 0"),
    pytest.param("actions: {button: {pin: 27}}\n", "actions.button.pin: expected a string, got 27 (int)", id="button pin as a number"),
    pytest.param("actions: {button: {pin: ''}}\n", "actions.button: pin: expected a gpiozero pin name such as GPIO27", id="empty button pin"),
    pytest.param("actions: {button: {pull_up: up}}\n", "actions.button.pull_up: expected true or false, got 'up' (str)", id="pull_up not a bool"),
    pytest.param("actions: {button: {bounce_ms: 9000}}\n", "actions.button.bounce_ms: expected a value >= 0 and <= 5000, got 9000", id="bounce_ms too long"),
    pytest.param("actions: {button: {pin_factory: lgpio}}\n", "actions.button.pin_factory: expected one of 'auto', 'mock'", id="button pin_factory unknown"),
    pytest.param("actions: {buttons: []}\n", "actions.buttons: unknown key; expected one of button, queue_size, wait_s", id="unknown actions key"),
    # motion (gatekeeper.motion)
    pytest.param("motion: {width: 8}\n", "motion.width: expected a value >= 16", id="motion: copy too small"),
    pytest.param("motion: {idle_fps: 0}\n", "motion.idle_fps: expected a value > 0", id="motion: no idle rate"),
    pytest.param("motion: {refresh_s: -1}\n", "motion.refresh_s: expected a value > 0", id="motion: negative refresh"),
    pytest.param("motion: {pixel_threshold: 300}\n", "motion.pixel_threshold: expected a value >= 0 and <= 255", id="motion: threshold beyond a grey level"),
    pytest.param("motion: {min_changed: 1.5}\n", "motion.min_changed: expected a value >= 0 and <= 1", id="motion: share above one"),
    pytest.param("motion: {enabled: maybe}\n", "motion.enabled: expected true or false", id="motion: not a bool"),
    pytest.param("motion: {fps: 5}\n", "motion.fps: unknown key; expected one of enabled, face_min_changed", id="motion: unknown key"),
    pytest.param("motion: 5\n", "motion: expected a mapping of keys", id="motion: not a section"),
]


@pytest.mark.parametrize(("text", "prefix"), BAD_CONFIGS)
def test_bad_config_names_the_key(tmp_path: Path, text: str, prefix: str | tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert message.startswith(prefix), message
    assert "\n" not in message


# -- every number of the schema: finite; durations and rates positive and at most ten years ----------

#: Numbers of the schema that are neither durations nor rates; a new key that is one must say so by
#: its name (``_s``, ``_seconds``, ``_ms``, ``_days``, ``_fps``), which is how the schema's one rule finds it.
NOT_DURATIONS = {
    "float": {"min_confidence", "min_face_px", "min_changed", "face_min_changed", "enter_threshold", "exit_threshold", "hold_threshold", "zone"},
    "int": {"width", "height", "max_reconnects", "threads", "model_workers", "hold_frames", "pixel_threshold", "jpeg_quality", "event_queue", "recent_events", "queue_size", "max_attempts", "port", "qos"},
}


def _numbers(cls: type, path: str, wrap: Any) -> list[tuple[str, str, type, Any]]:
    """(key path, field name, number type, a function of a value giving a config with it) for
    every number declared in ``cls`` and the dataclasses it holds."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = [a for a in (typing.get_args(hints[f.name]) or (hints[f.name],)) if a is not type(None)]
        if f.name == "zone":
            out.append((f"{path}{f.name}[0]", "zone", float, lambda v, w=wrap: w({"zone": [v, 0, 1, 1]})))
        elif len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            out += _numbers(inner[0], f"{path}{f.name}.", lambda d, w=wrap, n=f.name: w({n: d}))
        elif inner and inner[0] in (int, float):
            out.append((f"{path}{f.name}", f.name, inner[0], lambda v, w=wrap, n=f.name: w({n: v})))
    return out


def schema_numbers() -> list[tuple[str, str, type, Any]]:
    numbers = _numbers(Config, "", lambda d: d)
    for kind, cls in sorted(HOOK_TYPES.items()):
        numbers += _numbers(cls, f"hooks[{kind}].", lambda d, k=kind: {"hooks": [{"type": k, **EXAMPLE_REQUIRED.get(k, {}), **d}]})
    # A camera's own gate goes through the same rule.
    numbers.append(("cameras.a.gate.deny_after_s", "deny_after_s", float, lambda v: {"cameras": {"a": {"camera": 0, "gate": {"deny_after_s": v}}}}))
    return numbers


NUMBERS = schema_numbers()
DURATIONS = [n for n in NUMBERS if n[1].endswith(("_s", "_seconds", "_ms", "_days", "_fps"))]


def test_every_number_of_the_schema_is_a_duration_or_rate_by_name_or_known_not_to_be() -> None:
    assert len(DURATIONS) >= 25
    durations = {path for path, *_ in DURATIONS}
    others = {(kind.__name__, name) for path, name, kind, _ in NUMBERS if path not in durations}
    unknown = sorted(f"{t} {name}" for t, name in others if name not in NOT_DURATIONS[t])
    assert not unknown, f"{unknown}: a duration or rate? name it so (_s, _ms, _days, _fps), else list it in NOT_DURATIONS"


def _key_of(path: str) -> str:
    return re.sub(r"^hooks\[\w+\]", "hooks[0]", path)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=[".inf", "-.inf", ".nan"])
@pytest.mark.parametrize(("path", "name", "kind", "build"), NUMBERS, ids=[n[0] for n in NUMBERS])
def test_no_number_of_the_schema_takes_inf_or_nan(tmp_path: Path, path: str, name: str, kind: type, build: Any, value: float) -> None:
    text = yaml.safe_dump(build(value))
    assert ".inf" in text or ".nan" in text  # written as a person would
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value).startswith(f"{_key_of(path)}: expected "), info.value


@pytest.mark.parametrize(("path", "name", "kind", "build"), DURATIONS, ids=[n[0] for n in DURATIONS])
def test_every_duration_and_rate_is_positive_and_at_most_ten_years(tmp_path: Path, path: str, name: str, kind: type, build: Any) -> None:
    unit = next(u for end, (u, _) in DURATION_UNITS.items() if name.endswith(end)) if not name.endswith("_fps") else None
    too_long = kind(MAX_DURATION_S / unit * 1.5) if unit else 1 / MAX_DURATION_S / 2
    for value in (kind(-1), too_long):
        with pytest.raises(ConfigError) as info:
            config_from_dict(build(value))
        assert str(info.value).startswith(f"{_key_of(path)}: expected "), info.value
    if kind is float:
        assert config_from_dict(build(kind(1.5 if not name.endswith("_ms") else 1500))) is not None


def test_durations_built_in_code_follow_the_same_rule() -> None:
    with pytest.raises(ValueError, match="deny_after_s: expected a finite number > 0, got inf"):
        GateConfig(deny_after_s=math.inf)
    with pytest.raises(ValueError, match=r"max_fps: expected a finite number > 0 and <= 60, got inf"):
        HttpConfig(max_fps=math.inf)


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


# -- hostile files: bounded size, nodes and nesting --------------------------------------------


def billion_laughs() -> str:
    """The "billion laughs" in one value: nine aliases of nine aliases, nine levels deep, 9**9
    (387 million) strings once expanded, in a few hundred bytes. A reader that expands it (to
    validate it, or to quote the wrong value in its error) runs out of memory."""
    levels = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "name: [" + ", ".join(levels) + "]\n"


HOSTILE = [
    pytest.param(billion_laughs(), "has more than 10000 keys and values once its aliases (*name) are expanded (line ", id="billion laughs in a value"),
    pytest.param("name: &a [*a]\n", "nests deeper than 32 levels once its aliases (*name) are expanded", id="an alias inside its own anchor"),
    pytest.param("name: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper than 32 levels (line 1); expected at most 32 levels", id="5000 nested lists"),
    pytest.param("name: [" + ", ".join(["0"] * 20000) + "]\n", "has more than 10000 keys and values (line 1); expected at most 10000", id="20000 list items"),
]


@pytest.mark.parametrize(("text", "expected"), HOSTILE)
def test_hostile_config_is_refused_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"config file {str(path)!r} "), message
    assert expected in message
    assert "\n" not in message and len(message) < 300


def test_a_config_over_one_mebibyte_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w", encoding="utf-8") as f:  # 45 MiB of comment: valid YAML, and the default config
        for _ in range(45):
            f.write("#" + "x" * ((1 << 20) - 2) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config file {str(path)!r} is 45.0 MiB; expected a YAML file of at most 1 MiB"


def test_an_endless_config_file_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^config file '/dev/zero' is more than 1048576 bytes; expected a YAML file of at most 1 MiB$"):
        load_config("/dev/zero")


def test_aliases_within_the_bounds_work(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "hooks:\n  - {type: command, argv: [/bin/true], events: &events [OPEN, FAULT]}\n  - {type: mqtt, events: *events}\n"))
    assert cfg.hooks[0].events == cfg.hooks[1].events == ("OPEN", "FAULT")


def test_a_long_wrong_value_is_cut_short_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "name: [" + ", ".join(["1234567890"] * 900) + "]\n"))
    assert str(info.value) == "name: expected a string, got [" + ", ".join(["1234567890"] * 6) + ", 1234... (list)"


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


@pytest.mark.parametrize("value", [True, False])
def test_the_old_download_key_still_loads_with_one_deprecation_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture, value: bool) -> None:
    """detector.download chose whether a missing model was downloaded; the model now ships in the
    package. A config written for an older gatekeeper must still start: the key is accepted,
    changes nothing, and one warning says to remove it."""
    caplog.set_level("WARNING", logger="gatekeeper.config_load")
    cfg = load_config(write(tmp_path, f"detector:\n  download: {str(value).lower()}\n  min_confidence: 0.8\n"))
    assert cfg == Config(detector=DetectorConfig(download=value, min_confidence=0.8))
    warnings = [r for r in caplog.records if r.name == "gatekeeper.config_load"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    message = warnings[0].getMessage()
    assert "\n" not in message
    assert message.startswith("detector.download is deprecated and ignored") and "remove the key" in message


@pytest.mark.parametrize("text", ["", "detector: {min_confidence: 0.8}\n", "detector: {download: null}\n"])
def test_no_deprecation_warning_without_the_download_key(tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str) -> None:
    caplog.set_level("DEBUG", logger="gatekeeper.config_load")
    load_config(write(tmp_path, text))
    load_config(REPO / "config.yaml")  # the documented file names the key as null
    assert [r for r in caplog.records if r.name == "gatekeeper.config_load"] == []


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
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], face_model_path: Path) -> Any:
    """Call ``cli.main(argv)`` in an empty working directory; returns (status, stdout, stderr).

    The face detector model comes from the shared folder, and gpiozero starts with no pin
    factory loaded and none named in the environment: this machine has no GPIO."""
    from gpiozero import Device

    monkeypatch.chdir(tmp_path)
    # main() sets these with os.environ.setdefault; setting them here restores them afterwards.
    monkeypatch.setenv("GLOG_minloglevel", "2")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)

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
        pytest.param("source: {watchdog_s: .inf}\n", "gatekeeper: error: source.watchdog_s: expected a finite number > 0, got inf", id="a watchdog of .inf"),
        pytest.param(
            "hooks: [{type: webhook, url: 'https://h.example/e', max_age_s: .nan}]\n", "gatekeeper: error: hooks[0].max_age_s: expected a value > 0, got nan", id="a webhook max_age_s of .nan"
        ),
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


# -- --check-config runs the start-up checks -----------------------------------------------------

SECRET = "whsec_" + "QUFB" * 8  # 24 bytes, base64
GOOD_HOOKS = (
    "hooks:\n"
    "  - {type: gpio, pin: GPIO17, pin_factory: mock}\n"
    "  - {type: webhook, url: 'https://gate.example/e', secret_env: GATE_SECRET}\n"
    "  - {type: mqtt, username: gate, password_env: GATE_MQTT_PASSWORD}\n"
    "  - {type: command, argv: [/bin/true]}\n"
)


def journal_in(tmp_path: Path, kind: str) -> str:
    """A journal.path: one that a run could create, one under a file, one that is not SQLite."""
    if kind == "under a file":
        (tmp_path / "a-file").write_text("x")
        return str(tmp_path / "a-file" / "journal.sqlite3")
    path = tmp_path / "state" / "journal.sqlite3"
    if kind == "not SQLite":
        path.parent.mkdir()
        path.write_bytes(b"this is not a database" * 100)
    return str(path)


# (config text, environment, extra arguments, the problems start-up would refuse it for)
STARTUP_CHECKS = [
    pytest.param(GOOD_HOOKS, {"GATE_SECRET": SECRET, "GATE_MQTT_PASSWORD": "pw"}, [], [], id="every hook type, secrets set: passes"),
    pytest.param(GOOD_HOOKS, {"GATE_MQTT_PASSWORD": "pw"}, [], ["hooks[1].secret_env: environment variable GATE_SECRET is not set or empty"], id="unset secret_env"),
    pytest.param(GOOD_HOOKS, {"GATE_SECRET": SECRET}, [], ["hooks[2].password_env: environment variable GATE_MQTT_PASSWORD is not set or empty"], id="unset password_env"),
    pytest.param(GOOD_HOOKS, {"GATE_SECRET": "whsec_short", "GATE_MQTT_PASSWORD": "pw"}, [], ["hooks[1].secret_env: $GATE_SECRET: "], id="malformed secret in the environment"),
    pytest.param(
        "hooks:\n  - {type: command, name: door, argv: [/bin/true]}\n  - {type: webhook, name: door, url: 'https://x.example/'}\n",
        {}, [], ["hooks[1].name: 'door' is already the name of hooks[0]; expected unique names"], id="duplicate hook names",
    ),
    pytest.param("hooks: [{type: gpio, pin: NOTAPIN, pin_factory: mock}]\n", {}, [], ["gpio[0]: cannot use pin 'NOTAPIN': NOTAPIN is not a valid pin name"], id="GPIO pin NOTAPIN"),
    pytest.param("hooks: [{type: gpio, pin: GND, pin_factory: mock}]\n", {}, [], ["gpio[0]: cannot use pin 'GND'"], id="a ground pin"),
    pytest.param("hooks: [{type: gpio, pin: GPIO17}]\n", {}, [], ["gpio[0]: no GPIO on this machine that gpiozero can drive"], id="pin_factory auto without GPIO"),
    pytest.param(
        "hooks: [{type: gpio, pin: NOTAPIN}]\n", {}, [],
        ["gpio[0]: cannot use pin 'NOTAPIN'", "gpio[0]: no GPIO on this machine"], id="bad pin and no GPIO: both said",
    ),
    pytest.param("name: a/b\nhooks: [{type: mqtt}]\n", {}, [], ["mqtt[0]: the gate name 'a/b' cannot be an MQTT topic level"], id="gate name not an MQTT topic level"),
    pytest.param("actions: {button: {pin: GPIO27, pin_factory: mock}}\n", {}, [], [], id="staff button on a free pin: passes"),
    pytest.param("actions: {button: {pin: NOTAPIN, pin_factory: mock}}\n", {}, [], ["actions.button.pin: cannot use pin 'NOTAPIN': NOTAPIN is not a valid pin name"], id="staff button pin NOTAPIN"),
    pytest.param("actions: {button: {pin: GND, pin_factory: mock}}\n", {}, [], ["actions.button.pin: cannot use pin 'GND'"], id="staff button on a ground pin"),
    pytest.param(
        "hooks: [{type: gpio, pin: GPIO17, pin_factory: mock}]\nactions: {button: {pin: BOARD11, pin_factory: mock}}\n", {}, [],
        ["actions.button.pin: 'BOARD11' is a relay's pin (hooks); expected a pin of its own"], id="staff button on the relay's pin (GPIO17 is BOARD11)",
    ),
    pytest.param("actions: {button: {pin: GPIO27}}\n", {}, [], ["actions.button: no GPIO on this machine that gpiozero can drive"], id="staff button, pin_factory auto without GPIO"),
    pytest.param("detector: {model_path: /nonexistent/face.tflite}\n", {}, [], ["detector.model_path points at '/nonexistent/face.tflite', which is not a file"], id="missing face model"),
    pytest.param("classifier: {model_path: /nonexistent/smile.tflite}\n", {}, [], ["smile model '/nonexistent/smile.tflite' (classifier.model_path) does not exist"], id="missing smile model"),
    pytest.param("detector: {model_path: site.yaml}\n", {}, [], ["face detector model 'site.yaml' is not a TFLite model"], id="a face model that is not a model"),
    pytest.param("journal: {path: JOURNAL}\n", {}, [], [], id="a journal the run can create"),
    pytest.param("journal: {path: JOURNAL-under a file}\n", {}, [], ["' cannot be created: '"], id="a journal under a file"),
    pytest.param("journal: {path: JOURNAL-not SQLite}\n", {}, [], ["' cannot be opened: file is not a database"], id="a journal that is not SQLite"),
    pytest.param("journal: {path: JOURNAL-under a file, enabled: false}\n", {}, [], [], id="a disabled journal is not checked"),
    pytest.param(
        "journal: {path: /proc/nope/j.sqlite3}\n", {}, [],
        ["journal '/proc/nope/j.sqlite3' cannot be created: nothing can be created in '/proc'"], id="a journal where no folder can be made (root passes the permission bits)",
    ),
    pytest.param("hooks: [{type: command, argv: [/nonexistent/on-open]}]\n", {}, [], ["hooks[0].argv: program '/nonexistent/on-open' does not exist"], id="a command hook's program that does not exist"),
    pytest.param("hooks: [{type: command, argv: [gk-no-such-program, -v]}]\n", {}, [], ["hooks[0].argv: program 'gk-no-such-program' is not found on PATH"], id="a command hook's program not on PATH"),
    pytest.param("hooks: [{type: command, argv: [./site.yaml]}]\n", {}, [], ["hooks[0].argv: program './site.yaml' is not executable by this user"], id="a command hook's program that is not executable"),
    pytest.param("hooks: [{type: command, argv: ['true']}]\n", {}, [], [], id="a command hook's program found on PATH"),
    pytest.param(
        "hooks: [{type: command, argv: [/nonexistent/on-open]}]\ncameras:\n  a: {video: clip.mp4}\n  b: {video: clip2.mp4, hooks: [{type: command, argv: [/nonexistent/b]}]}\n", {}, [],
        ["cameras.a: hooks[0].argv: program '/nonexistent/on-open'", "cameras.b: hooks[0].argv: program '/nonexistent/b'", "cameras.a.video: ", "cameras.b.video: "],
        id="command hooks per camera",
    ),
    pytest.param("", {}, ["--video", "missing.mp4"], ["video file 'missing.mp4' does not exist"], id="--video that does not exist"),
    pytest.param("", {}, ["--video", "/dev/zero"], ["'/dev/zero' is not a video file but a character device"], id="--video /dev/zero"),
    pytest.param("", {}, ["--http", "0.0.0.0:8080"], ["--http 0.0.0.0:8080: listening beyond loopback needs http.token"], id="--http beyond loopback without a token"),
    pytest.param("", {}, ["--http", "127.0.0.1:8080"], [], id="--http on loopback"),
    pytest.param(
        "detector: {model_path: /nonexistent/face.tflite}\nhooks: [{type: webhook, url: 'https://x.example/', secret_env: GATE_SECRET}]\n",
        {}, [], ["detector.model_path points at", "hooks[0].secret_env: environment variable GATE_SECRET"], id="two problems: each on its own line",
    ),
]


@pytest.mark.parametrize(("text", "env", "extra", "problems"), STARTUP_CHECKS)
def test_check_config_runs_the_startup_checks(
    tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], extra: list[str], problems: list[str]
) -> None:
    """Exit 0 only for a config start-up accepts; otherwise exit 2 with each problem on its own
    line. The effective values are printed either way, and nothing is created."""
    for name in ("GATE_SECRET", "GATE_MQTT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for kind in ("under a file", "not SQLite", ""):
        placeholder = f"JOURNAL-{kind}" if kind else "JOURNAL"
        if placeholder in text:
            text = text.replace(placeholder, journal_in(tmp_path, kind))
    path = write(tmp_path, text, name="site.yaml")
    before = sorted(tmp_path.rglob("*"))
    status, out, err = run_cli(["--check-config", "--config", str(path), *extra])
    assert yaml.safe_load(out) == config_to_dict(load_config(path), redact=True)
    lines = err.splitlines()
    assert all(line.startswith("gatekeeper: error: ") for line in lines), err
    for expected in problems:
        assert any(expected in line for line in lines), f"{expected!r} not in:\n{err}"
    assert (status, len(lines)) == (2 if problems else 0, len(problems)), err
    assert sorted(tmp_path.rglob("*")) == before  # no journal, no file of any kind was written


def test_check_config_of_the_shipped_example(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/config.example.yaml is a Raspberry Pi's config: a relay on GPIO17 with
    ``pin_factory: auto`` and the webhook secret in $GATE_WEBHOOK_SECRET. On a machine without
    GPIO and without that variable, such as a laptop or CI, the run would refuse it, so the
    check does too, naming both; with a GPIO driver present (simulated with gpiozero's mock
    factory) and the secret set, as on the Pi it was written for, it passes."""
    example = str(REPO / "examples" / "config.example.yaml")
    monkeypatch.delenv("GATE_WEBHOOK_SECRET", raising=False)
    status, _, err = run_cli(["--check-config", "--config", example])
    assert status == 2
    assert [line.split(": ", 3)[2] for line in err.splitlines()] == ["hooks[1].secret_env", "gpio[0]"], err
    assert "environment variable GATE_WEBHOOK_SECRET is not set" in err and "no GPIO on this machine" in err

    monkeypatch.setenv("GATE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")  # what gpiozero finds on a Pi: a driver that loads
    assert run_cli(["--check-config", "--config", example])[::2] == (0, "")


MASKED = [
    pytest.param("https://user:pass@host/x?key=abc", "https://user:<redacted>@host/x?key=<redacted>", id="user, password and key"),
    pytest.param("https://ghp_0123456789@host/repo", "https://<redacted>@host/repo", id="a token as the user part"),
    pytest.param(
        "http://h:8080/e?page=2&api_key=a&Signature=b&X-Amz-Credential=c&access_token=d&sessionid=e&pwd=f&q=1",
        "http://h:8080/e?page=2&api_key=<redacted>&Signature=<redacted>&X-Amz-Credential=<redacted>&access_token=<redacted>&sessionid=<redacted>&pwd=<redacted>&q=1",
        id="secret-looking query parameters",
    ),
    pytest.param("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=<redacted>&state=1", id="parameters in the fragment"),
    pytest.param("https://h/x?key=", "https://h/x?key=", id="an empty value stays"),
    pytest.param("https://h/x?monkey=1", "https://h/x?monkey=<redacted>", id="masks too much rather than too little"),
    pytest.param("--url=mqtts://u:p@broker:8883", "--url=mqtts://u:<redacted>@broker:8883", id="a URL inside an argument"),
    pytest.param("Authorization: Bearer eyJ0eXAi.x.y", "Authorization: Bearer <redacted>", id="a bearer credential"),
    pytest.param("Authorization: basic dXNlcjpwYXNz", "Authorization: basic <redacted>", id="a basic credential, any case"),
    pytest.param("https://gate-server.example/events", "https://gate-server.example/events", id="a URL without secrets"),
    pytest.param("/usr/local/bin/on-open", "/usr/local/bin/on-open", id="not a URL"),
    pytest.param("http://u:pw@[::1/x?token=a#k", "http://u:<redacted>@[::1/x?token=<redacted>#k", id="a malformed URL keeps its secrets too"),
]


@pytest.mark.parametrize(("value", "masked"), MASKED)
def test_redact_text(value: str, masked: str) -> None:
    assert redact_text(value) == masked


def test_check_config_masks_url_credentials_and_secret_parameters(tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = tmp_path / "bin" / "curl"  # the check looks the command hook's program up on PATH
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:{os.environ['PATH']}")
    path = write(
        tmp_path,
        "hooks:\n"
        "  - {type: webhook, url: 'https://user:pw9z7@host/x?key=k4q2x'}\n"
        "  - {type: command, argv: [curl, -H, 'Authorization: Bearer s3cr3t-t0ken', 'https://h/x?token=abc123']}\n",
    )
    status, out, err = run_cli(["--check-config", "--config", str(path)])
    assert (status, err) == (0, "")
    for secret in ("pw9z7", "k4q2x", "s3cr3t-t0ken", "abc123"):  # words no key name contains
        assert f"{secret}@" not in out and f"={secret}" not in out and f" {secret}" not in out
    printed = yaml.safe_load(out)
    assert printed["hooks"][0]["url"] == "https://user:<redacted>@host/x?key=<redacted>"
    assert printed["hooks"][1]["argv"] == ["curl", "-H", "Authorization: Bearer <redacted>", "https://h/x?token=<redacted>"]
    assert load_config(path).hooks[0].url == "https://user:pw9z7@host/x?key=k4q2x"  # masked in the output only


# -- cameras: -----------------------------------------------------------------------------------

RELAY = "{type: gpio, pin: GPIO17, pin_factory: mock}"
BAD_CAMERAS = [
    pytest.param("cameras: [a, b]\n", "cameras: expected a mapping of camera names", id="a list"),
    pytest.param("cameras:\n  lane1: {camera: 0, zoom: 2}\n", "cameras.lane1.zoom: unknown camera key; expected one of camera, url, video, zone, gate, hooks", id="unknown camera key"),
    pytest.param("cameras:\n  lane1: {camera: 0, source: {realtime: true}}\n", "cameras.lane1.source: unknown camera key", id="a top-level section as a camera key"),
    pytest.param("cameras:\n  lane1: {zone: [0, 0, 1, 1]}\n", "cameras.lane1: expected exactly one source, one of camera, url, video; got none", id="no source"),
    pytest.param("cameras:\n  lane1:\n", "cameras.lane1: expected exactly one source", id="an empty camera"),
    pytest.param("cameras:\n  lane1: {camera: 0, url: 'rtsp://h/x'}\n", "cameras.lane1: expected exactly one source, one of camera, url, video; got camera and url", id="two sources"),
    pytest.param("cameras:\n  lane1: {camera: 100}\n", "cameras.lane1.camera: expected a value >= 0 and <= 99, got 100", id="camera index out of range"),
    pytest.param("cameras:\n  lane1: {camera: '0'}\n", "cameras.lane1.camera: expected an integer", id="camera index as a string"),
    pytest.param("cameras:\n  lane1: {url: ''}\n", "cameras.lane1.url: expected a URL, got an empty string", id="empty url"),
    pytest.param("cameras:\n  lane1: {url: 'http://[::1'}\n", "cameras.lane1.url: 'http://[::1': its host's '[' has no closing ']'", id="url with an unclosed IPv6 bracket"),
    pytest.param("cameras:\n  lane1: {url: 'rtsp://h:99999/x'}\n", "cameras.lane1.url: 'rtsp://h:99999/x': its port 99999 is out of range; expected a port from 1 to 65535", id="url with a port out of range"),
    pytest.param("cameras:\n  lane1: {url: 'rtsp://u:pw@h:abc/x'}\n", "cameras.lane1.url: 'rtsp://u:<redacted>@h:abc/x': its port is not a number", id="url with a port that is not a number, masked"),
    pytest.param("cameras:\n  lane1: {url: 'cam.local/stream'}\n", "cameras.lane1.url: 'cam.local/stream': it has no scheme", id="url without a scheme"),
    pytest.param("cameras:\n  lane1: {url: 'rtsp://a..b/x'}\n", "cameras.lane1.url: 'rtsp://a..b/x': its host 'a..b' is not a host name", id="url with an empty host label"),
    pytest.param("cameras:\n  lane1: {video: 3}\n", "cameras.lane1.video: expected a string, got 3 (int)", id="video as a number"),
    pytest.param("cameras:\n  lane1: 0\n", "cameras.lane1: expected a mapping with one of camera, url, video", id="a camera that is not a mapping"),
    pytest.param("cameras:\n  lane/1: {camera: 0}\n", "cameras: camera name 'lane/1' (str) is not usable; expected 1 to 64 of", id="a slash in a name"),
    pytest.param("cameras:\n  1: {camera: 0}\n", "cameras: camera name 1 (int) is not usable", id="a number as a name"),
    pytest.param("cameras:\n  lane1: {camera: 0}\n  lane1: {camera: 1}\n", "is not valid YAML at line 3: duplicate key 'lane1'", id="duplicate names"),
    pytest.param("cameras:\n  lane1: {camera: 0}\n  Lane1: {camera: 1}\n", "cameras.Lane1: duplicate camera name (cameras.lane1 already has it", id="names equal but for case"),
    pytest.param("cameras:\n  a: {camera: 0}\n  b: {camera: 0}\n", "cameras.b.camera: 0 is already the source of cameras.a; expected one camera per source", id="two cameras on one device"),
    pytest.param("cameras:\n  lane1: {camera: 0, gate: {hold_secs: 1}}\n", "cameras.lane1.gate.hold_secs: unknown key; expected one of", id="unknown gate key"),
    pytest.param("cameras:\n  lane1: {camera: 0, gate: {hold_seconds: fast}}\n", "cameras.lane1.gate.hold_seconds: expected a number > 0", id="wrong gate type"),
    pytest.param("cameras:\n  lane1: {camera: 0, gate: {exit_threshold: 0.9}}\n", "cameras.lane1.gate: thresholds must satisfy", id="an override breaking a cross-field rule"),
    pytest.param("cameras:\n  lane1: {camera: 0, gate: 3}\n", "cameras.lane1.gate: expected a mapping of gate keys", id="gate not a mapping"),
    pytest.param("cameras:\n  lane1: {camera: 0, zone: [0.5, 0, 0.2, 1]}\n", "cameras.lane1.gate: zone: expected [x0, y0, x1, y1]", id="a bad zone"),
    pytest.param("cameras:\n  lane1: {camera: 0, zone: [0, 0, 1, 1], gate: {zone: [0, 0, 1, 1]}}\n", "cameras.lane1.zone: given twice, also as cameras.lane1.gate.zone", id="zone twice"),
    pytest.param("cameras:\n  lane1: {camera: 0, hooks: [{type: relay}]}\n", "cameras.lane1.hooks[0].type: expected one of", id="unknown hook type"),
    pytest.param("cameras:\n  lane1: {camera: 0, hooks: [{type: gpio, pinn: 4}]}\n", "cameras.lane1.hooks[0].pinn: unknown key", id="unknown hook key"),
    pytest.param(f"hooks: [{RELAY}]\ncameras:\n  a: {{camera: 0}}\n  b: {{camera: 1}}\n", "hooks[0].pin (inherited by cameras.b): relay pin 'GPIO17' is already the relay of cameras.a; expected one relay pin per camera", id="two cameras inherit one relay"),
    pytest.param("actions: {button: {pin: GPIO5, pin_factory: mock}}\ncameras:\n  a: {camera: 0}\n  b: {camera: 1}\n", "actions.button.pin: one staff button cannot say which of 2 cameras (a, b) to open", id="one staff button for two cameras"),
    pytest.param("hooks: [{type: mqtt, client_id: gk}]\ncameras:\n  a: {camera: 0}\n  b: {camera: 1}\n", "hooks[0].client_id (inherited by cameras.b): 'gk' is already the MQTT client id of cameras.a", id="two cameras inherit one MQTT client id"),
    pytest.param(f"cameras:\n  a: {{camera: 0, hooks: [{RELAY}]}}\n  b: {{camera: 1, hooks: [{{type: gpio, pin: BCM17}}]}}\n", "cameras.b.hooks[0].pin: relay pin 'BCM17' is already the relay of cameras.a", id="one relay pin spelt two ways"),
]


@pytest.mark.parametrize(("text", "prefix"), BAD_CAMERAS)
def test_bad_cameras_name_the_key(tmp_path: Path, text: str, prefix: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert prefix in message, message
    assert "\n" not in message


@pytest.mark.parametrize("url", ["rtsp://10.0.0.7:554/stream1", "http://admin:pw@cam.local/video.mjpg?token=x", "http://[fe80::1]:8080/x", "udp://@:5000", "srt://:9000?mode=listener"])
def test_well_formed_camera_urls_load(url: str) -> None:
    assert config_from_dict({"cameras": {"lane1": {"url": url}}}).cameras[0].url == url


def test_cameras_take_the_top_level_defaults_and_their_overrides(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            f"name: park\ngate: {{hold_seconds: 0.7, deny_after_s: 4}}\nhooks: [{RELAY}]\n"
            "cameras:\n"
            "  lane1: {camera: 0}\n"
            "  lane2: {url: 'rtsp://127.0.0.1:8554/x', zone: [0.5, 0, 1, 1], gate: {deny_after_s: 9}, hooks: []}\n"
            "  replay: {video: clip.mp4, hooks: []}\n",
        )
    )
    lane1, lane2, replay = cfg.cameras
    assert (lane1.name, lane1.target, lane2.target, replay.video) == ("lane1", 0, "rtsp://127.0.0.1:8554/x", "clip.mp4")
    assert (lane1.gate.hold_seconds, lane1.gate.deny_after_s, lane1.gate.zone) == (0.7, 4.0, (0.0, 0.0, 1.0, 1.0))
    assert (lane2.gate.hold_seconds, lane2.gate.deny_after_s, lane2.gate.zone) == (0.7, 9.0, (0.5, 0.0, 1.0, 1.0))
    assert lane1.hooks == cfg.hooks and lane2.hooks == () and replay.hooks == ()
    own = cfg.for_camera(lane2)
    assert (own.name, own.gate, own.hooks, own.cameras) == ("lane2", lane2.gate, (), ())
    # --check-config prints the effective cameras, and what it prints loads back as the same config.
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_without_cameras_one_camera_is_named_by_the_config() -> None:
    cfg = config_from_dict({"name": "entrance", "gate": {"hold_seconds": 0.6}})
    (only,) = cfg.camera_list()
    assert (only.name, only.target, only.video, only.gate, only.hooks) == ("entrance", None, None, cfg.gate, cfg.hooks)


def test_documented_cameras_example_is_a_valid_config() -> None:
    from gatekeeper.config_doc import CAMERAS_EXAMPLE

    lines = render().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("cameras:")))
    example = [line[3:] for line in lines[start + 1 :] if line.startswith("#  ")][: len(CAMERAS_EXAMPLE.splitlines())]
    cfg = config_from_dict({"cameras": yaml.safe_load("\n".join(example))})
    assert [c.name for c in cfg.cameras] == ["lane1", "lane2"]
    assert cfg.cameras[1].gate.hold_seconds == 0.8 and cfg.cameras[0].gate.zone == (0.25, 0.0, 0.75, 1.0)
