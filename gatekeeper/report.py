"""The replay report: the smile score over time, and why the gate did what it did, as a picture.

    gatekeeper --video clip.mp4 --report clip.png    # or clip.html: the picture and an event table

One plot: the deciding face's smile score per frame against the enter and exit thresholds,
shaded where a face was in view, with a marker for every OPEN, DENY, FACE_LOST, FAULT and
RECOVERED. :class:`ReplayRecorder` collects what the plot needs while the gate runs (an
``on_frame`` callback and an event sink); :func:`write_report` draws it with matplotlib (Agg,
no display needed), which comes with the ``report`` extra: ``pip install 'gatekeeper[report]'``.

Times. A file's frames are plotted at their position in the file. A live source's times are
the wall clock: its report (``live=True``) plots seconds since the start (its first frame or
event) on the x axis, the local time of day on a second axis along the top, and names the
start's date and time in the title; the HTML table gives both for every event.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, GatekeeperError
from .events import Event, EventType
from .gate import GateConfig
from .redact import redact_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .capture import Frame
    from .pipeline import Pipeline

__all__ = ["FrameRecord", "ReplayRecorder", "check_report_path", "start_time", "write_report"]

SUFFIXES = (".png", ".html")
TOP = 1.06  # where markers of events without a score (FACE_LOST, FAULT...) sit, above the scores

# Marker style per event type: colour, matplotlib marker, label.
EVENT_STYLE: dict[EventType, tuple[str, str]] = {
    EventType.OPEN: ("#1b9e3e", "^"),
    EventType.DENY: ("#d62728", "X"),
    EventType.FACE_LOST: ("#7f7f7f", "v"),
    EventType.FAULT: ("#8b0000", "s"),
    EventType.RECOVERED: ("#1f77b4", "D"),
}


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One processed frame: the deciding face's score (None without a face) and the face count."""

    frame: int
    t: float
    score: float | None
    faces: int


@dataclass
class ReplayRecorder:
    """Records every processed frame and every event of a run, for :func:`write_report`.

    >>> rec = ReplayRecorder()
    >>> camera = Camera(name, cfg, pipeline, [StdoutSink(), rec], on_frame=rec.on_frame)  # doctest: +SKIP

    ``live``: the source is a camera or stream, whose times are the wall clock; pass it on to
    :func:`write_report`.
    """

    rows: list[FrameRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    live: bool = False

    def on_frame(self, frame: Frame, pipeline: Pipeline) -> None:
        # The gate's own last_score is the deciding (largest) face's: the plot shows what it judged.
        self.rows.append(FrameRecord(frame.index, frame.t, pipeline.gate.last_score, len(pipeline.last_faces)))

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        """Nothing to release; the report is written by the caller once the run ends."""


def check_report_path(path: str | Path) -> Path:
    """The report path, if it ends in .png or .html; :class:`ConfigError` otherwise (checked before a run)."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"--report {str(p)!r}: expected a file name ending in .png or .html")
    if not p.parent.is_dir():
        raise ConfigError(f"--report {str(p)!r}: folder {str(p.parent)!r} does not exist; expected an existing folder")
    return p


def _face_spans(rows: list[FrameRecord], frame_s: float) -> list[tuple[float, float]]:
    """(start, end) times of runs of frames with at least one face."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for r in rows:
        if r.faces and start is None:
            start = r.t
        elif not r.faces and start is not None:
            spans.append((start, last + frame_s))
            start = None
        last = r.t
    if start is not None:
        spans.append((start, last + frame_s))
    return spans


def start_time(rows: Sequence[FrameRecord], events: Sequence[Event]) -> float:
    """A live run's start: the earliest time of its first frame and its first event (0.0 for none)."""
    firsts = [seq[0].t for seq in (rows, events) if seq]
    return min(firsts) if firsts else 0.0


def _clock(wall: float, fmt: str = "%H:%M:%S") -> str:
    return time.strftime(fmt, time.localtime(wall))


def render_png(rows: list[FrameRecord], events: list[Event], gate: GateConfig, *, title: str = "", live: bool = False) -> bytes:
    """The plot as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a gate controller or in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.6), dpi=110, layout="constrained")
    try:
        draw(ax, rows, events, gate, title=title, live=live)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def draw(ax: Axes, rows: list[FrameRecord], events: list[Event], gate: GateConfig, *, title: str = "", live: bool = False) -> None:
    """Draw the report's plot on ``ax`` (a live run's times are shifted to seconds since its start)."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    t0 = start_time(rows, events) if live else 0.0
    if live:
        rows = [FrameRecord(r.frame, r.t - t0, r.score, r.faces) for r in rows]
        events = [dataclasses.replace(e, t=e.t - t0) for e in events]
    times = [r.t for r in rows]
    scores = [float("nan") if r.score is None else r.score for r in rows]  # NaN breaks the line where no face is
    frame_s = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1 / 30
    handles: list[object] = []
    spans = _face_spans(rows, frame_s)
    for start, end in spans:
        ax.axvspan(start, end, color="#4c78a8", alpha=0.12, lw=0)
    if spans:
        handles.append(Patch(color="#4c78a8", alpha=0.25, label="face in view"))
    elif rows:
        ax.text(0.5, 0.5, "no face in view", transform=ax.transAxes, ha="center", va="center", fontsize=14, color="#888888")
    (line,) = ax.plot(times, scores, color="#222222", lw=1.6, label="smile score (deciding face)")
    handles.append(line)
    handles.append(ax.axhline(gate.enter_threshold, color="#1b9e3e", ls="--", lw=1.2, label=f"enter threshold {gate.enter_threshold:g}"))
    handles.append(ax.axhline(gate.exit_threshold, color="#e69f00", ls=":", lw=1.4, label=f"exit threshold {gate.exit_threshold:g}"))
    for kind, (color, marker) in EVENT_STYLE.items():
        of_kind = [e for e in events if e.event is kind]
        if not of_kind:
            continue
        for e in of_kind:
            ax.axvline(e.t, color=color, lw=1.0, alpha=0.6)
        ys = [TOP if e.score is None else e.score for e in of_kind]  # events without a score sit on top
        handles.append(ax.scatter([e.t for e in of_kind], ys, color=color, marker=marker, s=90, zorder=5, edgecolor="white", linewidth=0.8, label=f"{kind.value} ({len(of_kind)})", clip_on=False))
        for e in of_kind:
            who = "" if e.track is None else f", track {e.track}"
            ax.annotate(f"{kind.value}\nframe {e.frame}{who}", (e.t, TOP if e.score is None else e.score), textcoords="offset points", xytext=(5, 8), fontsize=8, color=color)
    ax.set_ylim(-0.02, TOP + 0.14)
    ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # From 0 (or an earlier first frame) to the last frame; live, to a later event too (the FAULT when it ended).
    xs = times + ([e.t for e in events] if live else [])
    if xs:
        ax.set_xlim(min(*xs, 0.0), max(max(xs), times[-1] + frame_s if times else 0.0))
    ax.set_ylabel("smile probability")
    counts = ", ".join(f"{k.value} {n}" for k in EventType if (n := sum(e.event is k for e in events))) or "no events"
    heading = [title] if title else []
    if live:
        ax.set_xlabel("seconds since the start")
        # The time of day along the top: what an operator matches against other logs.
        top = ax.secondary_xaxis("top", functions=(lambda x: x + t0, lambda w: w - t0))
        top.xaxis.set_major_formatter(FuncFormatter(lambda w, _pos: _clock(w)))
        top.tick_params(labelsize=8)
        heading.append(f"from {_clock(t0, '%Y-%m-%d %H:%M:%S')} local time")
    else:
        ax.set_xlabel("t (s)")
    ax.set_title("  ·  ".join([*heading, f"{len(rows)} frames", counts]), fontsize=11)
    ax.grid(alpha=0.25)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)


def render_html(png: bytes, events: list[Event], *, title: str, live: bool = False, start: float = 0.0) -> str:
    """A self-contained page: the plot (embedded PNG) and a table of the events.

    ``live``: event times are the wall clock; the table gives the local time and the seconds since ``start``.
    """

    def when(e: Event) -> tuple[str, ...]:
        return (_clock(e.t) + f".{int(e.t * 100) % 100:02d}", f"{e.t - start:.2f}") if live else (f"{e.t:.2f}",)

    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (e.event.value, e.frame, *when(e), "" if e.score is None else f"{e.score:.3f}", e.faces, "" if e.track is None else e.track, e.reason or "")) + "</tr>"
        for e in events
    )
    time_heads = "<th>local time</th><th>since start (s)</th>" if live else "<th>t (s)</th>"
    columns = 8 if live else 7
    data = base64.b64encode(png).decode("ascii")
    name = html.escape(title)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gatekeeper report: {name}</title>
<style>body{{font:15px system-ui,sans-serif;margin:2em;color:#222}} img{{max-width:100%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:left}}</style></head>
<body><h1>gatekeeper report: {name}</h1>
<img alt="smile score over time with thresholds, face-present spans and event markers" src="data:image/png;base64,{data}">
<h2>Events</h2>
<table><thead><tr><th>event</th><th>frame</th>{time_heads}<th>score</th><th>faces</th><th>track</th><th>reason</th></tr></thead>
<tbody>
{rows or f'<tr><td colspan="{columns}">no events</td></tr>'}
</tbody></table></body></html>
"""


def write_report(path: str | Path, rows: list[FrameRecord], events: list[Event], gate: GateConfig, *, title: str = "", live: bool = False) -> Path:
    """Write the report to ``path`` (.png: the plot; .html: a page with the plot and an event table).

    ``live``: the times are a live source's wall clock (see the module's "Times"). ``title``
    (the source's name: a camera URL) is printed with its secrets masked.
    """
    p = check_report_path(path)
    title = redact_text(title)
    png = render_png(rows, events, gate, title=title, live=live)
    try:
        if p.suffix.lower() == ".png":
            p.write_bytes(png)
        else:
            p.write_text(render_html(png, events, title=title, live=live, start=start_time(rows, events)), encoding="utf-8")
    except OSError as exc:
        raise GatekeeperError(f"--report {str(p)!r}: cannot write the report: {exc.strerror or exc}") from None
    return p
