"""Accuracy by group (issue 21, item 5): MTFL's gender, glasses and head pose per face, the
numbers computed from probabilities, labels and group names, and ``gatekeeper eval`` printing the
table for a real model (the shipped one, through LiteRT) on real MTFL faces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gatekeeper.training.data import MTFL_ATTRIBUTES, dataset_splits, load_mtfl
from gatekeeper.training.metrics import group_metrics, group_table, wilson_interval

REPO = Path(__file__).resolve().parents[2]

# (probs, labels, each face's group as one letter, threshold, expected per group: n, smiling,
# accuracy, smiles found, non-smiling called smiling), each computed by hand.
CASES = [
    pytest.param([0.9, 0.8, 0.2, 0.1, 0.7, 0.4, 0.6, 0.3], [1, 1, 0, 0, 1, 1, 0, 0], "aaaabbbb", 0.5,
                 {"a": (4, 2, 1.0, 1.0, 0.0), "b": (4, 2, 0.5, 0.5, 0.5)}, id="one group right on every face, the other half wrong"),
    pytest.param([0.5, 0.49, 0.5, 0.49], [1, 1, 0, 0], "xxxx", 0.5, {"x": (4, 2, 0.5, 0.5, 0.5)}, id="a score equal to the threshold is called smiling"),
    pytest.param([0.9, 0.1, 0.7], [0, 0, 1], "ccs", 0.5, {"c": (2, 0, 0.5, None, 0.5), "s": (1, 1, 1.0, 1.0, None)},
                 id="a group with no smiling face has no smiles-found rate, and the other way round"),
    pytest.param([0.6, 0.6, 0.6], [1, 0, 0], "lff", 0.7, {"l": (1, 1, 0.0, 0.0, None), "f": (2, 0, 1.0, None, 0.0)}, id="the threshold given, not 0.5"),
]


@pytest.mark.parametrize(("probs", "labels", "groups", "threshold", "expected"), CASES)
def test_group_metrics_counts_each_group_at_the_threshold(probs: list[float], labels: list[int], groups: str, threshold: float, expected: dict) -> None:
    result = group_metrics(np.array(probs), np.array(labels), {"g": np.array(list(groups))}, threshold)["g"]  # one letter a face
    got = {g: (r["n"], r["smiling"], r["accuracy"], r["smiles_found"], r["non_smiling_called_smiling"]) for g, r in result["groups"].items()}
    assert got == expected
    assert list(result["groups"]) == sorted(expected)
    accuracies = [e[2] for e in expected.values()]
    assert result["accuracy_gap"] == round(max(accuracies) - min(accuracies), 4)
    for r in result["groups"].values():
        correct = round(r["accuracy"] * r["n"])
        assert r["accuracy_95"] == list(wilson_interval(correct, r["n"]))
        assert r["accuracy_95"][0] <= r["accuracy"] <= r["accuracy_95"][1]


def test_group_metrics_refuses_attributes_that_do_not_line_up() -> None:
    with pytest.raises(ValueError, match="attribute 'pose' has 2 values for 3 faces"):
        group_metrics(np.array([0.1, 0.2, 0.9]), np.array([0, 0, 1]), {"pose": np.array(["1", "2"])}, 0.5)


@pytest.mark.parametrize(
    ("successes", "n", "interval"),
    [(8, 10, (0.4902, 0.9433)), (50, 100, (0.4038, 0.5962)), (0, 5, (0.0, 0.4345)), (5, 5, (0.5655, 1.0))],
)
def test_wilson_interval_matches_the_textbook_values(successes: int, n: int, interval: tuple[float, float]) -> None:
    assert wilson_interval(successes, n) == interval


def test_group_table_has_one_row_per_group() -> None:
    by_group = group_metrics(np.array([0.9, 0.1, 0.7, 0.2]), np.array([1, 0, 1, 1]), {"gender": np.array(["female", "male", "female", "male"])}, 0.5)
    lines = group_table(by_group).splitlines()
    assert lines[0].startswith("| attribute | group | faces |") and len(lines) == 4
    assert lines[2] == "| gender | female | 2 | 2 | 100.0% (34.2-100.0) | 100.0% | - |"
    assert lines[3] == "| gender | male | 2 | 1 | 50.0% (9.4-90.5) | 0.0% | 0.0% |"


def test_mtfl_reads_gender_glasses_and_pose_per_face(shared_dir: Path) -> None:
    root = shared_dir / "data" / "mtfl"
    ds = load_mtfl(root)
    assert ds.attributes is not None and set(ds.attributes) == {"gender", "glasses", "pose"}
    test = dataset_splits(ds, 1234)["test"]
    lines = (root / "testing.txt").read_text().split("\n")
    # The test split is testing.txt, in order: its fields 11, 13 and 14 are gender, glasses, pose.
    for row, line in zip(test[:50], lines[:50], strict=True):
        f = line.split()
        for name, (column, values) in MTFL_ATTRIBUTES.items():
            assert ds.attributes[name][row] == values[f[column]]
    counts = {name: {v: int((ds.attributes[name][test] == v).sum()) for v in set(ds.attributes[name][test])} for name in ds.attributes}
    # Counted with awk on testing.txt's columns 12, 14 and 15 (gender 1 male, 2 female; glasses 1 yes).
    assert counts["gender"] == {"male": 1173, "female": 1822}
    assert counts["glasses"] == {"glasses": 241, "no glasses": 2754}
    assert counts["pose"] == {"1 left profile": 193, "2 left": 450, "3 frontal": 1825, "4 right": 401, "5 right profile": 126}


@pytest.fixture
def small_mtfl(shared_dir: Path, tmp_path: Path) -> Path:
    """MTFL's layout with the first 40 training and 40 test lines, the image folders linked."""
    root = shared_dir / "data" / "mtfl"
    small = tmp_path / "mtfl"
    small.mkdir()
    for folder in ("AFLW", "lfw_5590", "net_7876"):
        (small / folder).symlink_to(root / folder)
    for name in ("training.txt", "testing.txt"):
        (small / name).write_text("\n".join(line for line in (root / name).read_text().splitlines()[:40]) + "\n")
    return small


@pytest.mark.slow
def test_eval_prints_the_table_by_group_for_the_shipped_model(small_mtfl: Path, face_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "gatekeeper.cli", "eval", "--data", f"mtfl:{small_mtfl}", "--split", "test", "--group-table", "--face-widths",
           "--out", str(out), "--cache", str(tmp_path / "cache"), "--face-model", str(face_model_path), "--log-level", "warning"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    served = json.loads((REPO / "model" / "model.json").read_text(encoding="utf-8"))["serve"]  # the file the card tells the gate to run
    assert metrics["n"] == 40 and Path(metrics["model"]).name == served
    by_group = metrics["by_group"]
    assert set(by_group) == {"gender", "glasses", "pose"}
    for entry in by_group.values():
        assert sum(r["n"] for r in entry["groups"].values()) == 40
        assert sum(r["accuracy"] * r["n"] for r in entry["groups"].values()) == pytest.approx(metrics["accuracy"] * 40, abs=0.01)
    assert proc.stdout == group_table(by_group) == (out / "groups.md").read_text()
    assert metrics["accuracy_gap_by_group"] == {k: v["accuracy_gap"] for k, v in by_group.items()}


def test_group_table_is_refused_for_a_set_without_attributes(tmp_path: Path) -> None:
    for cls in ("smile", "neutral"):
        (tmp_path / "faces" / cls).mkdir(parents=True)
    cmd = [sys.executable, "-m", "gatekeeper.cli", "eval", "--data", f"folders:{tmp_path / 'faces'}", "--group-table", "--out", str(tmp_path / "eval")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "gatekeeper: error: --group-table: faces records no attribute per face; expected a set that does (mtfl:PATH)"
    assert not (tmp_path / "eval").exists()
