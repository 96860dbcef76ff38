"""What ships in deploy/: the Prometheus alert rules and the Grafana dashboard.

The rules are checked and unit-tested by promtool (Debian's ``prometheus`` package, which CI
installs: a missing promtool fails these tests, it does not skip them). Every metric name that a
rule or a dashboard expression uses is looked up in the ``/metrics`` of the real gatekeeper,
run on a shared clip with a hook, so a renamed metric cannot leave an alert that never fires.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from test_web import Counted, event, gatekeeper_serving, make_view, metric_samples, wait_for

from gatekeeper.classify import default_model_path
from gatekeeper.events import EventType
from gatekeeper.hooks.base import HookStats

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "gatekeeper-alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "gatekeeper-alerts.test.yml"
DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))
#: Names Prometheus makes itself, not the gate: ``up`` is the scrape's own.
PROMETHEUS_OWN = {"up"}
#: What a dashboard's variables stand for when its expressions are checked as PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed; expected Debian's prometheus package (apt-get install prometheus), which .ci/run installs")
    return path


def run_promtool(*args: str, cwd: Path = REPO, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)


# -- PromQL: the metric names an expression reads ------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: its identifiers outside strings, label matchers, range
    brackets and label lists, that are not functions (followed by ``(``) or keywords."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", "1", s)  # Grafana's variables
    s = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", s):
        if m.group().lower() not in _KEYWORDS and not s[m.end() :].lstrip().startswith("("):
            names.add(m.group())
    return names


def test_promql_metric_names() -> None:
    assert promql_metric_names('histogram_quantile(0.95, sum by (le, camera) (rate(gatekeeper_stage_seconds_bucket{camera=~"$camera"}[$__rate_interval])))') == {"gatekeeper_stage_seconds_bucket"}
    assert promql_metric_names('up{job="gatekeeper"} == 0 offset 5m') == {"up"}
    assert promql_metric_names("(time() - a_seconds > 3600) and (min_over_time(b[1h]) == 1) and on (instance, job) (c > bool 1)") == {"a_seconds", "b", "c"}
    assert promql_metric_names("sum(rate(x_total[5m])) by (hook) / ignoring(hook) group_left sum(y)") == {"x_total", "y"}
    assert promql_metric_names('label_replace(z, "dst", "$1", "src", "(.*)") + 1e3') == {"z"}


# -- the rules and the dashboards, as files ------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def dashboard_expressions(path: Path) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' targets and its variables' queries
    (``label_values(METRIC{...}, LABEL)`` stands for ``METRIC{...}``)."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    panels = [p for top in dash["panels"] for p in [top, *top.get("panels", [])]]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
            assert m, f"{path.name}: variable {var['name']}: expected label_values(METRIC, LABEL), got {query!r}"
            exprs.append(m.group(1))
    return exprs


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = run_promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    tested = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Each alert is tested, firing and quiet.
    cases = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    evaluated = [t for case in cases for t in case["alert_rule_test"]]
    for rule in alert_rules():
        mine = [t for t in evaluated if t["alertname"] == rule["alert"]]
        assert any(t["exp_alerts"] for t in mine), f"{rule['alert']}: no unit test where it fires"
        assert any(not t["exp_alerts"] for t in mine), f"{rule['alert']}: no unit test where it stays quiet"


def test_a_broken_rule_fails_its_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: the same tests against rules whose threshold moved."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text(encoding="utf-8")
    silent = "time() - gatekeeper_last_open_timestamp_seconds > 3600"
    assert text.count(silent) == 1
    (tmp_path / RULES.name).write_text(text.replace(silent, silent.replace("3600", "7200")), encoding="utf-8")
    tested = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0 and "GatekeeperNoOpenForAnHour" in tested.stdout + tested.stderr


@pytest.mark.parametrize(
    ("term", "alert"),
    [
        pytest.param('gatekeeper_in_service{via!="schedule"} == 0', "GatekeeperOutOfServiceLong", id="a closure by the opening hours alerts"),
        pytest.param("and on (instance, job, camera) (min_over_time(gatekeeper_schedule_open[1h]) == 1)", "GatekeeperNoOpenForAnHour", id="no OPEN at night alerts"),
    ],
)
def test_rules_blind_to_the_opening_hours_fail_their_unit_tests(tmp_path: Path, term: str, alert: str) -> None:
    """The unit tests hold the rules to the opening hours: without the via filter a scheduled
    closure would alert after 2 h; without gatekeeper_schedule_open a quiet night would."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text(encoding="utf-8")
    assert text.count(term) == 1
    blind = 'gatekeeper_in_service == 0' if "via" in term else ""
    (tmp_path / RULES.name).write_text(text.replace(term, blind), encoding="utf-8")
    assert run_promtool("check", "rules", str(tmp_path / RULES.name)).returncode == 0  # still valid rules
    tested = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0 and alert in tested.stdout + tested.stderr


def test_every_alert_has_a_severity_and_says_what_and_where() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert "{{ $labels.instance }}" in rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_the_dashboards_are_grafana_json_whose_expressions_are_promql(tmp_path: Path) -> None:
    assert DASHBOARDS, "no dashboard in deploy/grafana"
    for path in DASHBOARDS:
        dash = json.loads(path.read_text(encoding="utf-8"))
        assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36, path.name
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for p in dash["panels"]:
            for t in p.get("targets", []):
                assert t["datasource"]["uid"] == "${datasource}" and t["refId"], (path.name, p["title"])
        # promtool checks each expression as a recording rule, Grafana's variables filled in.
        exprs = dashboard_expressions(path)
        rules = []
        for i, expr in enumerate(exprs):
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            rules.append({"record": f"dashboard:expr_{i}", "expr": re.sub(r"\$\w+", ".*", expr)})
        rules_file = tmp_path / f"{path.stem}.rules.yml"
        rules_file.write_text(yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}), encoding="utf-8")
        checked = run_promtool("check", "rules", str(rules_file))
        assert checked.returncode == 0, f"{path.name}: " + checked.stdout + checked.stderr


# -- the metrics the rules and the dashboards read, against a running gate -----------------------


def served_names(text: str) -> tuple[set[str], set[str]]:
    """(the families ``/metrics`` declares, with a histogram's _bucket/_sum/_count; the names of
    its samples)."""
    declared, sampled = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            declared.add(name)
            if kind in ("histogram", "summary"):
                declared.update(name + s for s in ("_sum", "_count", *(("_bucket",) if kind == "histogram" else ())))
        elif line and not line.startswith("#"):
            sampled.add(re.match(r"[a-zA-Z_:][\w:]*", line).group())  # type: ignore[union-attr]
    return declared, sampled


def test_the_new_gauges_follow_the_gate_and_its_hooks() -> None:
    """gatekeeper_last_open_timestamp_seconds is the wall clock of the last OPEN (0 before one),
    gatekeeper_hook_queue_{length,capacity} a hook's backlog and queue_size, and
    gatekeeper_build_info is there with its three labels."""
    hook = Counted("webhook[0]", HookStats())
    hook.queue_size = 5
    view = make_view(hooks=[hook])
    registry = view.registry
    assert registry.get_sample_value("gatekeeper_last_open_timestamp_seconds", {"camera": "gate"}) == 0
    view.emit(event(EventType.DENY))
    assert registry.get_sample_value("gatekeeper_last_open_timestamp_seconds", {"camera": "gate"}) == 0
    before = time.time()
    view.emit(event(EventType.OPEN, frame=2))
    opened = registry.get_sample_value("gatekeeper_last_open_timestamp_seconds", {"camera": "gate"})
    assert before <= opened <= time.time()

    assert registry.get_sample_value("gatekeeper_hook_queue_length", {"camera": "gate", "hook": "webhook[0]"}) == 0
    for i in range(3):  # the hook never started: what it is given stays queued
        hook.publish(event(EventType.OPEN, frame=10 + i))
    assert registry.get_sample_value("gatekeeper_hook_queue_length", {"camera": "gate", "hook": "webhook[0]"}) == 3
    assert registry.get_sample_value("gatekeeper_hook_queue_capacity", {"camera": "gate", "hook": "webhook[0]"}) == 5

    (build,) = [labels for name, labels in metric_samples(generate_latest(registry).decode()) if name == "gatekeeper_build_info"]
    assert [k for k, _ in build] == ["model_sha", "python", "version"]


@pytest.mark.slow
def test_every_metric_of_the_rules_and_dashboards_is_in_a_running_gates_metrics(shared_dir: Path, face_model_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    # A door contact on gpiozero's mock pins: the door's metrics have their series too.
    config.write_text('hooks:\n  - {type: command, argv: ["true"], events: [OPEN]}\ngate: {sensor: {pin: GPIO22, pin_factory: mock}}\n', encoding="utf-8")
    clip = shared_dir / "videos" / "single_face.mp4"
    started = time.time()
    with gatekeeper_serving("--video", str(clip), "--hold-open", "60", face_model_path=face_model_path, tmp_path=tmp_path, config=config) as gk:
        wait_for("the end of the clip", lambda: gk.status()["ended"], timeout=120)
        status, body = gk.fetch("/metrics")
    assert status == 200
    text = body.decode()
    linted = run_promtool("check", "metrics", stdin=text)
    assert linted.returncode == 0, linted.stdout + linted.stderr

    declared, sampled = served_names(text)
    rule_names = {n for rule in alert_rules() for n in promql_metric_names(rule["expr"])}
    dash_names = {n: path.name for path in DASHBOARDS for e in dashboard_expressions(path) for n in promql_metric_names(e)}
    assert len(rule_names) >= 10 and len(dash_names) >= 20, (rule_names, dash_names)  # the parsing found them
    # The rules' metrics have series on this gate (one camera, one hook); a dashboard's may be a
    # family with no series yet (no operator action was refused here).
    assert rule_names - sampled - PROMETHEUS_OWN == set(), f"alert rules use metrics this gate does not serve: {sorted(rule_names - sampled - PROMETHEUS_OWN)}"
    missing = {n: f for n, f in dash_names.items() if n not in declared}
    assert missing == {}, f"dashboards use metrics this gate does not serve: {missing}"

    m = metric_samples(text)
    (build,) = [labels for name, labels in m if name == "gatekeeper_build_info"]
    assert dict(build)["model_sha"] == hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert started < m[("gatekeeper_last_open_timestamp_seconds", (("camera", "gate"),))] < time.time()
    assert m[("gatekeeper_hook_queue_length", (("camera", "gate"), ("hook", "command[0]")))] == 0
    assert m[("gatekeeper_hook_deliveries_total", (("camera", "gate"), ("hook", "command[0]")))] >= 1
