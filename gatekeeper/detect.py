"""Face detection with MediaPipe Tasks (BlazeFace short range), and where its model comes from."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._native import captured_stderr
from .errors import ModelError

__all__ = [
    "ENV_FACE_MODEL",
    "FACE_MODEL_SHA256",
    "PACKAGED_FACE_MODEL",
    "Face",
    "FaceDetector",
    "packaged_face_model",
    "resolve_face_model",
]

log = logging.getLogger(__name__)

FACE_MODEL_NAME = "blaze_face_short_range.tflite"
#: The official file (Apache-2.0, its licence notice beside it), shipped inside the package: a
#: gate never reaches out to the internet for a model.
PACKAGED_FACE_MODEL = Path(__file__).resolve().parent / "assets" / FACE_MODEL_NAME
FACE_MODEL_SHA256 = "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f"
ENV_FACE_MODEL = "GATEKEEPER_FACE_MODEL"

#: Keypoint order of BlazeFace, as MediaPipe returns them.
KEYPOINTS = ("eye_right", "eye_left", "nose", "mouth", "ear_right", "ear_left")


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face, in pixels of the frame it came from.

    ``box`` is (x, y, width, height); ``keypoints`` is a (6, 2) float array in
    :data:`KEYPOINTS` order; ``score`` is the detector's confidence.
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


def resolve_face_model(configured: str | None = None) -> Path:
    """Find the face detector model file; nothing is ever downloaded.

    Order: the configured path (``detector.model_path``), the ``GATEKEEPER_FACE_MODEL``
    environment variable, then the copy shipped inside the package, checked against its SHA-256.
    A path that is named but missing is an error (it is never silently replaced by another
    model).
    """
    for origin, value in (("detector.model_path", configured), (ENV_FACE_MODEL, os.environ.get(ENV_FACE_MODEL))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ModelError(f"{origin} points at {str(path)!r}, which is not a file; expected the face detector model ({FACE_MODEL_NAME})")
            return path
    return packaged_face_model()


def packaged_face_model(path: Path | None = None) -> Path:
    """The face detector model shipped in the package (or ``path``), once its SHA-256 is checked."""
    path = path or PACKAGED_FACE_MODEL
    hint = f"reinstall gatekeeper, or set detector.model_path or {ENV_FACE_MODEL} to a copy of {FACE_MODEL_NAME}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"the packaged face detector model {str(path)!r} cannot be read ({exc.strerror}); {hint}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != FACE_MODEL_SHA256:
        raise ModelError(f"the packaged face detector model {str(path)!r} is damaged (sha256 {digest[:12]}..., expected {FACE_MODEL_SHA256[:12]}...); {hint}")
    return path


def check_tflite_file(path: Path, what: str) -> bytes:
    """Read a .tflite file and check it is a TFLite flatbuffer ('TFL3' identifier)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{what} {str(path)!r} is not a TFLite model (no 'TFL3' header); expected a .tflite file")
    return data


@contextlib.contextmanager
def _lean_mediapipe_import() -> Iterator[None]:
    """Import mediapipe without the two heavy packages it drags in for things a gate never uses.

    * TensorFlow: mediapipe's tasks package imports ``tensorflow.tools.docs`` for a documentation
      decorator when TensorFlow is installed (seconds and hundreds of MB). It falls back to a
      no-op on ModuleNotFoundError, which a ``None`` entry in ``sys.modules`` produces.
    * matplotlib: ``mediapipe.tasks.python.vision`` imports ``matplotlib.pyplot`` for its drawing
      helpers (0.6 s of start-up). A placeholder module stands in while mediapipe is imported;
      only those drawing helpers, which we never call, keep a reference to it.

    Both stand-ins are removed afterwards, so the real packages stay importable (training,
    ``--report``). Where a package is already imported, it is left alone.
    """
    stand_ins: dict[str, types.ModuleType | None] = {}
    if "tensorflow" not in sys.modules:
        stand_ins["tensorflow"] = None
    if "matplotlib" not in sys.modules:
        stand_ins["matplotlib"] = types.ModuleType("matplotlib")
        stand_ins["matplotlib.pyplot"] = types.ModuleType("matplotlib.pyplot")
    sys.modules.update(stand_ins)  # type: ignore[arg-type]
    try:
        yield
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name, 0) is module:
                del sys.modules[name]


def _mediapipe() -> tuple[Any, Any, Any]:
    with _lean_mediapipe_import():
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    return mp, BaseOptions, vision


class FaceDetector:
    """MediaPipe BlazeFace detector.

    ``video=True`` uses the VIDEO running mode (strictly increasing timestamps, tracking-friendly)
    for streams; ``video=False`` the IMAGE mode for unrelated stills (training, ``score``).
    Use as a context manager, or call :meth:`close`: the MediaPipe finaliser misbehaves at
    interpreter exit.

    >>> with FaceDetector(model_path) as det:  # doctest: +SKIP
    ...     faces = det.detect(frame.image, frame.t)
    """

    def __init__(
        self,
        model_path: Path | str,
        *,
        video: bool = True,
        min_confidence: float = 0.5,
        min_face_px: float = 0.0,
    ) -> None:
        path = Path(model_path)
        data = check_tflite_file(path, "face detector model")
        mp, base_options, vision = _mediapipe()
        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=base_options(model_asset_buffer=data),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        try:
            with captured_stderr():
                self._det = vision.FaceDetector.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"face detector model {str(path)!r} could not be loaded: {str(exc).splitlines()[0]}") from None
        self._video = video
        self._last_ts = -1
        self.min_face_px = min_face_px
        # One throw-away detection: the first call builds the XNNPACK delegate (slow, and noisy
        # on stderr); doing it here keeps both out of the first real frame. The image is
        # deliberately not 64-byte aligned, like most decoded frames, so that LiteRT's one-time
        # "memory is not aligned" notice is also caught here rather than printed mid-run.
        with captured_stderr():
            warm = np.zeros(128 * 128 * 3 + 16, dtype=np.uint8)[16:].reshape(128, 128, 3)
            self.detect(warm, 0.0)

    def detect(self, image_rgb: np.ndarray, t: float | None = None) -> list[Face]:
        """Find faces in an HxWx3 uint8 RGB image; ``t`` (seconds) is required in video mode."""
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        if self._video:
            if t is None:
                raise ValueError("detect() in video mode needs the frame time t (seconds)")
            # MediaPipe rejects a timestamp that does not increase; sources with duplicate or
            # coarse timestamps are nudged forward by a millisecond.
            ts = max(round(t * 1000.0), self._last_ts + 1)
            self._last_ts = ts
            result = self._det.detect_for_video(mp_image, ts)
        else:
            result = self._det.detect(mp_image)
        h, w = image_rgb.shape[:2]
        faces = []
        for d in result.detections:
            b = d.bounding_box
            if b.width < self.min_face_px:
                continue
            kps = np.array([[k.x * w, k.y * h] for k in d.keypoints], dtype=np.float32)
            if kps.shape != (6, 2):
                continue
            faces.append(Face((float(b.origin_x), float(b.origin_y), float(b.width), float(b.height)), kps, float(d.categories[0].score)))
        return faces

    def close(self) -> None:
        det, self._det = getattr(self, "_det", None), None
        if det is not None:
            with captured_stderr():
                det.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
