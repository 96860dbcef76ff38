"""The service soak's judging (scripts/soak_service.py): the line fit through each sample series,
the check of what the journal says was delivered against what each receiver got, and the pass/fail
per target. The soak itself runs for an hour and is not run in CI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from soak_service import Delivered, Sample, judge, reconcile, trend


def series(minutes: int, *, rss_per_hour: float = 0.0, fds: int = 40, fd_leak_every: int = 0, threads: int = 30, p99: float = 20.0) -> list[Sample]:
    """One sample a minute; RSS 150 MB plus the growth asked for and a little noise."""
    out = []
    for m in range(minutes + 1):
        noise = 0.4 * ((m * 7) % 5 - 2) / 2
        leaked = m // fd_leak_every if fd_leak_every else 0
        out.append(Sample(float(m), 150 + rss_per_hour * m / 60 + noise, fds + leaked + m % 2, threads, 100.0 + 3 * m, m % 3, 10 * m, p99))
    return out


def test_the_fit_measures_growth_per_hour_after_the_warm_up() -> None:
    samples = series(60, rss_per_hour=12.0)
    samples[0].rss_mb = samples[1].rss_mb = 90.0  # start-up, before the models were loaded: left out
    tr = trend(samples, "rss_mb", warmup_min=5)
    assert tr is not None and tr.n == 56
    assert tr.per_hour == pytest.approx(12.0, abs=0.5)
    assert tr.rise == pytest.approx(12.0 * 55 / 60, abs=0.5)
    assert trend(samples[:6], "rss_mb", warmup_min=5) is None  # one sample after the warm-up: no line


def by_target(rows: list[tuple[str, str, bool]]) -> dict[str, bool]:
    return {target.split(" ")[0] if target.split(" ")[0] in ("rss_mb", "fds", "threads") else target: ok for target, _, ok in rows}


def delivered_all() -> list[Delivered]:
    journaled = [("e1", "OPEN", {"webhook[0]": "delivered"})]
    return [reconcile(journaled, "webhook", [("e1", "d1")])]


@pytest.mark.parametrize(
    ("samples", "failing"),
    [
        (series(60), set()),
        (series(60, rss_per_hour=4.0), set()),
        (series(60, rss_per_hour=8.0), {"rss_mb"}),  # a leak of 8 MB/h
        (series(60, fd_leak_every=10), {"fds"}),  # one fd every 10 minutes
        (series(60, p99=80.0), {"healthy cameras' p99 frame-to-event <= 50 ms throughout"}),
    ],
    ids=["flat", "rss-4mb-per-h", "rss-8mb-per-h", "fd-leak", "slow"],
)
def test_each_target_passes_or_fails_on_its_own(samples: list[Sample], failing: set[str]) -> None:
    rows = judge(samples, 5.0, delivered_all(), 20.0, journal_missing=0)
    assert {t for t, ok in by_target(rows).items() if not ok} == failing


def test_reconcile_finds_lost_duplicated_conflicting_and_unknown_events() -> None:
    journaled = [
        ("open1", "OPEN", {"webhook[0]": "delivered", "mqtt[1]": "delivered"}),
        ("open2", "OPEN", {"webhook[0]": "delivered", "mqtt[1]": "expired"}),  # MQTT gave up on it
        ("lost1", "FACE_LOST", {"webhook[0]": "delivered", "mqtt[1]": "delivered"}),
        ("fault", "FAULT", {"webhook[0]": "pending", "mqtt[1]": "delivered"}),  # never settled
        ("gpio", "OPEN", {"gpio[2]": "delivered"}),  # no hook of these kinds
    ]
    webhook = reconcile(journaled, "webhook", [("open1", "a"), ("open1", "a"), ("open2", "b"), ("fault", "c"), ("stray", "x")])
    assert (webhook.journaled, webhook.received, webhook.duplicates) == (4, 5, 1)
    assert webhook.lost == ["lost1", "fault"] and webhook.opens_missing == []
    assert webhook.unknown == ["stray"] and webhook.conflicting == []
    assert webhook.states == {"delivered": 3, "pending": 1}
    mqtt = reconcile(journaled, "mqtt", [("open1", "a"), ("open1", "a2"), ("open2", "b"), ("lost1", "d"), ("fault", "c")])
    assert mqtt.lost == ["open2"] and mqtt.opens_missing == ["open2"]  # received, yet the journal says expired
    assert mqtt.conflicting == ["open1"], "the same id twice with different contents is no duplicate"


def test_delivery_problems_fail_the_soak() -> None:
    samples = series(10)
    clean = judge(samples, 1.0, delivered_all(), 20.0, journal_missing=0)
    assert all(ok for _, _, ok in clean)
    lost = reconcile([("e1", "OPEN", {"webhook[0]": "delivered"})], "webhook", [])
    rows = dict((t, ok) for t, _, ok in judge(samples, 1.0, [lost], 20.0, journal_missing=0))
    assert rows["webhook: 0 lost, every OPEN at least once, duplicates only of the same event"] is False
    rows = dict((t, ok) for t, _, ok in judge(samples, 1.0, delivered_all(), 20.0, journal_missing=2))
    assert rows["journal holds every event written"] is False
    nothing = reconcile([], "webhook", [])
    rows = dict((t, ok) for t, _, ok in judge(samples, 1.0, [nothing], 20.0, journal_missing=0))
    assert rows["webhook: 0 lost, every OPEN at least once, duplicates only of the same event"] is False, "a soak that delivered nothing proves nothing"


def test_a_journal_growing_faster_than_its_events_fails_the_soak() -> None:
    samples = series(20)  # 3 kB a minute for 10 events: about 307 bytes each
    name = "journal growth matches the events written (<= 2048 bytes each)"
    assert dict((t, ok) for t, _, ok in judge(samples, 5.0, delivered_all(), 20.0, journal_missing=0))[name] is True
    for s in samples:
        s.journal_kb *= 10  # 3 kB each
    assert dict((t, ok) for t, _, ok in judge(samples, 5.0, delivered_all(), 20.0, journal_missing=0))[name] is False
    for s in samples:
        s.events = 0  # a journal growing with nothing written
    assert dict((t, ok) for t, _, ok in judge(samples, 5.0, delivered_all(), 20.0, journal_missing=0))[name] is False


def test_a_slow_start_inside_the_warm_up_does_not_count() -> None:
    samples = series(20)
    samples[1].p99_ms = 400.0  # models loading, cameras connecting
    rows = {t: ok for t, _, ok in judge(samples, 5.0, delivered_all(), 20.0, journal_missing=0)}
    assert rows["healthy cameras' p99 frame-to-event <= 50 ms throughout"] is True
    samples[10].p99_ms = 51.0
    rows = {t: ok for t, _, ok in judge(samples, 5.0, delivered_all(), 20.0, journal_missing=0)}
    assert rows["healthy cameras' p99 frame-to-event <= 50 ms throughout"] is False


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (from /proc's children lists)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


@pytest.mark.slow
def test_sigterm_stops_the_soak_and_everything_it_started(tmp_path: Path) -> None:
    """A soak ended by SIGTERM (a timeout, `kill`) stops the service, the broker and the cameras it
    started, as Ctrl-C does, instead of leaving them running."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "soak.py"
    proc = subprocess.Popen([sys.executable, str(script), "--service", "--minutes", "5", "--workdir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started: set[int] = set()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the header comes once the service answers
            if line.lstrip().startswith("minute"):
                break
        started = _descendants(proc.pid)
        assert any("gatekeeper.cli" in Path(f"/proc/{p}/cmdline").read_text(errors="replace").replace("\0", " ") for p in started if Path(f"/proc/{p}").exists()), "the service runs"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while (alive := [p for p in started if Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive, f"left running after SIGTERM: {[Path(f'/proc/{p}/cmdline').read_text(errors='replace').replace(chr(0), ' ')[:80] for p in alive]}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        for pid in started:  # what a failing run left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
