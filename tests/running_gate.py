"""A gate running in a thread for the operator-action tests: a real Camera, tracker, Gate,
Controls, Dispatcher, SQLite Journal and web server, with a stand-in for detect -> classify.

The stand-in gives one face a fixed score on synthetic frames (no models): the models are not
what the action tests are about; everything the actions touch is the real thing.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from standin import StandInPipeline

from gatekeeper.actions import ActionsConfig, Controls
from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.config import Config, HttpConfig, JournalConfig
from gatekeeper.events import FaceScore
from gatekeeper.gate import Gate, GateConfig
from gatekeeper.hooks import Dispatcher, Hook
from gatekeeper.journal import Journal
from gatekeeper.serve import Watchers
from gatekeeper.tls import HttpTlsConfig
from gatekeeper.users import shared_users
from gatekeeper.web import LiveView, WebServer

TOKEN = "operator-token-0123456789"
FACE = FaceScore((40.0, 30.0, 50.0, 50.0), 0.95)
# Frames counted, not timed: a smile held 3 frames opens. The manual-open rate limit is the default (1 s).
GATE = GateConfig(hold_seconds=None, hold_frames=3, deny_after_s=600.0)


class OneFace(StandInPipeline):
    """One face of ``score`` on every frame (None: nobody); a test may change ``score`` while it runs."""

    def __init__(self, gate: Gate, score: float | None = None) -> None:
        super().__init__(gate, self._faces)
        self.score = score

    def _faces(self, frame: Frame) -> list[FaceScore]:
        return [] if self.score is None else [dataclasses.replace(FACE, score=self.score)]


class Running:
    """A Camera in a thread fed up to 50 frames a second until stopped, with its journal and live view."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        token: str | None = TOKEN,
        score: float | None = None,
        gate: GateConfig = GATE,
        hooks: Sequence[Hook] = (),
        actions: ActionsConfig | None = None,
        users: str | None = None,
        tls: HttpTlsConfig | None = None,
    ) -> None:
        self.cfg = Config(gate=gate, http=HttpConfig(token=token, users=users, tls=tls or HttpTlsConfig()), journal=JournalConfig(path=str(tmp_path / "journal.sqlite3")), actions=actions or ActionsConfig())
        self.journal = Journal(self.cfg.journal.resolved_path())
        self.dispatcher = Dispatcher(self.journal, hooks)
        self.controls = Controls(self.cfg.actions, users=shared_users(users))
        pipeline = OneFace(Gate(gate), score)
        watchers = Watchers()
        self.app = Camera(self.cfg.name, self.cfg, pipeline, [watchers], watchers.on_frame, dispatcher=self.dispatcher, controls=self.controls)  # type: ignore[arg-type]
        self.controls.attach(hooks, in_service=self.app.pipeline.gate.in_service)
        self.controls.start_button()
        self.dispatcher.start()
        self.view = LiveView(self.app)
        watchers.add(self.view)
        self.server = WebServer(self.view, "127.0.0.1", 0)
        self.server.start()
        self.thread = threading.Thread(target=self.app.run, args=(self._frames(),), daemon=True)
        self.thread.start()

    def _frames(self) -> Iterator[Frame]:
        image = np.zeros((120, 160, 3), np.uint8)
        i, start = 0, time.monotonic()
        while not self.app.stopping.is_set():
            # Frame times are the time since the start, as a camera's are (the rate limit is timed
            # in frame time: on a loaded machine fewer frames come, not slower time).
            yield Frame(image, i, time.monotonic() - start)
            i += 1
            time.sleep(0.02)

    def journaled(self) -> list[dict[str, Any]]:
        return [e.event.to_dict() for e in self.journal.entries()]

    def close(self) -> None:
        if self.app.stopping.is_set():
            return
        self.app.stopping.set()
        self.thread.join(5)
        self.app.close()
        self.server.stop()


