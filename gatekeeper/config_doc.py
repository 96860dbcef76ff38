"""Render the documented default ``config.yaml`` from the declared config dataclasses.

``python -m gatekeeper.config_doc > config.yaml`` rewrites the file; a test checks that the
committed file is exactly this output, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import typing

import yaml

from .config import Config
from .hooks.config import HOOK_TYPES

#: Values for the keys a hook type requires, so its documented example is a valid entry.
EXAMPLE_REQUIRED: dict[str, dict[str, typing.Any]] = {
    "webhook": {"url": "https://gate-server.example/events"},
    "command": {"argv": ("/usr/local/bin/on-gate-event", "--verbose")},
}

#: The commented example of ``cameras:`` in config.yaml (a test loads it).
CAMERAS_EXAMPLE = """\
lane1:
  camera: 0  # one source: camera (an index, 0 to 99), url (rtsp://, http://...) or video (a file)
  zone: [0.25, 0.0, 0.75, 1.0]  # this camera's gate.zone
lane2:
  url: rtsp://192.0.2.10:8554/lane2
  gate: {hold_seconds: 0.8}  # any gate key; the rest come from the top-level gate:
  hooks:  # this camera's own hooks instead of the top-level list; one relay pin per camera
    - {type: gpio, pin: GPIO27}
"""

#: The commented example of ``service.hours:`` in config.yaml (a test loads it).
HOURS_EXAMPLE = """\
timezone: Europe/Paris  # required: an IANA time zone name
week:  # days not named are closed; a range belongs to the day it starts on
  mon-thu: "09:00-18:00"
  fri: ["09:00-18:00", "20:00-02:00"]  # 20:00-02:00 runs into Saturday
  sat: ["10:00-12:00", "13:00-17:00"]
exceptions:  # a date's own ranges instead of its weekday's
  2026-12-24: "09:00-13:00"
  2026-12-25: closed
"""

HEADER = """\
# gatekeeper configuration: every key, its default, and what it does.
# Generated from the code by `python -m gatekeeper.config_doc`; a test keeps the two equal.
# Unknown keys and wrong types are errors that name the key. Every number is finite (no .inf or
# .nan); a duration (a key ending _s, _seconds, _ms or _days) or a rate (_fps) is never negative
# and lasts at most ten years. Check a file with:
#   gatekeeper --check-config --config config.yaml
"""


def _scalar(value: typing.Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").removesuffix("...").strip()


def _render(cls: type, obj: typing.Any, indent: int, lines: list[str], comment: bool = False) -> None:
    pad = "  " * indent
    lead = "# " if comment else ""
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        doc = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{lead}{f.name}:  # {doc}")
            _render(type(value), value, indent + 1, lines, comment)
        elif f.name == "cameras":
            lines.append(f"{pad}# Each camera has its own capture, tracks, gate and hooks; detection and classification are shared.")
            lines.append(f"{pad}# Top-level gate: and hooks: are every camera's defaults; a camera overrides any gate key and")
            lines.append(f"{pad}# replaces the hook list. Empty (the default): one camera, named by name:, from --camera/--url/--video.")
            lines.append(f"{pad}{f.name}:  # {doc}")
            lines += [f"{pad}#  {line}" for line in CAMERAS_EXAMPLE.splitlines()]
        elif f.name == "hooks":
            lines.append(f"{pad}# {doc}. Examples of each type, with every key at its default:")
            lines.append(f"{pad}{f.name}: []")
            for kind, hook_cls in sorted(HOOK_TYPES.items()):
                example = hook_cls(**EXAMPLE_REQUIRED.get(kind, {}))
                lines.append(f"{pad}#  - type: {kind}")
                sub: list[str] = []
                _render(hook_cls, example, 0, sub, comment=False)
                lines += [f"{pad}#    {line}" for line in sub if not line.startswith("type:")]
        elif f.name == "hours":
            lines.append(f"{pad}{lead}{f.name}: {_scalar(value)}  # {doc}. For example:")
            lines += [f"{pad}#  {line}" for line in HOURS_EXAMPLE.splitlines()]
        else:
            lines.append(f"{pad}{lead}{f.name}: {_scalar(value)}  # {doc}")


def render() -> str:
    lines: list[str] = []
    _render(Config, Config(), 0, lines)
    return HEADER + "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
