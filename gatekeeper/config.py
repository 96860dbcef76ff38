"""One config object, declared as typed dataclasses: :class:`Config` and its sections, and
:class:`CameraConfig`, one camera of ``cameras:`` with the top-level defaults applied.

Every field has a type, a default and a one-line description (``doc``), optionally bounds
(``ge``/``le``/``gt``), declared with :func:`~gatekeeper.schema.opt`. A config is validated once
at start: :mod:`gatekeeper.config_load` reads a file (:func:`~gatekeeper.config_load.load_config`)
or a mapping (:func:`~gatekeeper.config_load.config_from_dict`) into these, through
:mod:`gatekeeper.config_values` (each key's type and bounds) and :mod:`gatekeeper.config_cameras`
(``cameras:``). Unknown keys and wrong types are errors that name the key path::

    ConfigError: gate.hold_frames: expected an integer >= 1, got 'six' (str)

``config.yaml`` at the repository root documents every key with its default; a test keeps it
equal to the defaults declared here.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .actions import ActionsConfig
from .gate import GateConfig
from .hooks.config import HookConfig
from .hours import ServiceConfig
from .motion import MotionConfig
from .schema import check_bounds, opt
from .tls import HttpTlsConfig

__all__ = ["SECRET_FIELDS", "CameraConfig", "ClassifierConfig", "Config", "DetectorConfig", "HttpConfig", "JournalConfig", "SourceConfig"]


@dataclass(frozen=True)
class SourceConfig:
    realtime: bool = opt(False, "replay files at their own frame rate instead of as fast as possible")
    width: int | None = opt(None, "camera: requested frame width in pixels (null: the camera's default)", ge=16)
    height: int | None = opt(None, "camera: requested frame height in pixels (null: the camera's default)", ge=16)
    reconnect_initial_s: float = opt(0.5, "live sources: first wait before reconnecting after a failure", gt=0)
    reconnect_max_s: float = opt(10.0, "live sources: longest wait between reconnect attempts (exponential backoff)", gt=0)
    watchdog_s: float = opt(2.0, "live sources: no frame for this long raises a FAULT and holds the gate shut", gt=0)
    max_reconnects: int | None = opt(None, "live sources: give up after this many failed reconnects in a row (null: never)", ge=0)


@dataclass(frozen=True)
class DetectorConfig:
    model_path: str | None = opt(None, "face detector .tflite; null: $GATEKEEPER_FACE_MODEL, then the model shipped in the package")
    download: bool | None = opt(None, "deprecated, ignored: nothing is ever downloaded (the model ships in the package); accepted so older configs load")
    min_confidence: float = opt(0.7, "detections below this confidence are ignored", ge=0, le=1)
    min_face_px: float = opt(40.0, "faces narrower than this (pixels) are ignored: too far away to judge", ge=0)


@dataclass(frozen=True)
class ClassifierConfig:
    model_path: str | None = opt(None, "smile model .tflite with its model card beside it; null: the model shipped in model/")
    threads: int = opt(1, "CPU threads for the smile model", ge=1, le=64)


@dataclass(frozen=True)
class JournalConfig:
    path: str | None = opt(None, "SQLite event journal (WAL); null: $XDG_STATE_HOME/gatekeeper/journal.sqlite3 (~/.local/state/...)")
    enabled: bool = opt(True, "write every event to the journal before any hook sees it")
    keep_days: float = opt(30.0, "events older than this many days are deleted from the journal at start", gt=0)
    on_error: Literal["fail_closed", "deliver"] = opt(
        "fail_closed",
        "when the journal cannot write (full disk): fail_closed holds the gate shut (FAULT) until it can; "
        "deliver keeps opening and delivers OPENs without a record",
    )

    def resolved_path(self) -> Path:
        """Where the journal lives: ``path``, else the user's state directory."""
        if self.path:
            return Path(self.path).expanduser()
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return Path(base) / "gatekeeper" / "journal.sqlite3"


@dataclass(frozen=True)
class HttpConfig:
    token: str | None = opt(None, "bearer token for the live view, /status and /metrics; required to listen beyond loopback (16+ characters); an admin credential that names nobody")
    users: str | None = opt(None, "YAML file of named operators, one credential (hash) and role (viewer, operator, admin) per person; see `gatekeeper users add`")
    tls: HttpTlsConfig = opt(HttpTlsConfig(), "HTTPS: the page, its streams, the API, /status and /metrics over TLS")
    jpeg_quality: int = opt(80, "JPEG quality of the live picture (1-100)", ge=1, le=100)
    max_fps: float = opt(15.0, "most pictures per second sent to each live view", gt=0, le=60)
    event_queue: int = opt(64, "events waiting for one slow live-view client; beyond it the oldest is dropped", ge=1)
    recent_events: int = opt(20, "recent events a newly opened live view starts with", ge=0, le=1000)

    def __post_init__(self) -> None:
        check_bounds(self)  # HttpConfig(max_fps=0) built in code fails as a file would
        # A short token on a network-facing camera view is no protection; say so at start.
        if self.token is not None and len(self.token) < 16:
            raise ValueError(f"token: expected at least 16 characters, got {len(self.token)}")


#: Fields whose values are secrets: ``--check-config`` prints them masked.
SECRET_FIELDS = frozenset({"secret", "token"})


@dataclass(frozen=True)
class CameraConfig:
    """One camera of ``cameras:``, with the top-level defaults already applied.

    ``gate`` is the top-level ``gate:`` with the camera's overrides (and its ``zone``), ``hooks``
    the camera's own list or, without one, the top-level ``hooks:``. A one-camera run
    (``--camera``, ``--url``, ``--video``) is one of these without a source, named by ``name:``.
    """

    name: str
    camera: int | None = None
    url: str | None = None
    video: str | None = None
    gate: GateConfig = GateConfig()
    hooks: tuple[HookConfig, ...] = ()

    @property
    def target(self) -> int | str | None:
        """The live source (a camera index or a URL), or None for a video file or no source."""
        return self.camera if self.camera is not None else self.url


@dataclass(frozen=True)
class Config:
    name: str = opt("gate", "the gate's name, used in MQTT topics and webhook payloads")
    source: SourceConfig = opt(SourceConfig(), "where frames come from")
    detector: DetectorConfig = opt(DetectorConfig(), "face detection")
    motion: MotionConfig = opt(MotionConfig(), "when the face detector runs: only on frames that changed, slower while nobody is in view")
    classifier: ClassifierConfig = opt(ClassifierConfig(), "smile classification")
    model_workers: int | None = opt(
        None,
        "threads that run the face detector and the smile model for the cameras of one service, each with its own copy of both "
        "(more memory; a camera's frame waits for fewer others); null: one per CPU core, at most 2, never more than the cameras",
        ge=1,
        le=16,
    )
    gate: GateConfig = opt(GateConfig(), "when the gate opens")
    journal: JournalConfig = opt(JournalConfig(), "the event journal")
    http: HttpConfig = opt(HttpConfig(), "the live view and metrics server (on with --http HOST:PORT)")
    cameras: tuple[CameraConfig, ...] = opt((), "several cameras in one process: a mapping of camera name to its source and overrides")
    hooks: tuple[HookConfig, ...] = opt((), "where events go besides stdout: a list of hooks, each with a 'type'")
    actions: ActionsConfig = opt(ActionsConfig(), "operator controls: open by hand, out of service, in service (page, HTTP, MQTT, a staff button)")
    service: ServiceConfig = opt(ServiceConfig(), "when the gate is in service by itself: opening hours")

    def camera_list(self) -> tuple[CameraConfig, ...]:
        """The cameras to run: those of ``cameras:``, else one named by ``name:`` without a source
        (the command line gives it: ``--camera``, ``--url`` or ``--video``)."""
        return self.cameras or (CameraConfig(self.name, gate=self.gate, hooks=self.hooks),)

    def for_camera(self, camera: CameraConfig) -> Config:
        """The config one camera runs under: ``name`` is the camera's, ``gate`` and ``hooks`` its own."""
        return dataclasses.replace(self, name=camera.name, gate=camera.gate, hooks=camera.hooks, cameras=())
