"""`gatekeeper train`'s options and TrainOptions are one list: every option fills a field, every
field has an option, and the defaults agree (the dataclass is what a run records and resumes)."""

from __future__ import annotations

import argparse
import dataclasses

from gatekeeper.train_command import add_train_arguments
from gatekeeper.training.options import TrainOptions


def test_every_option_is_a_field_with_the_same_default() -> None:
    ap = argparse.ArgumentParser()
    add_train_arguments(ap)
    parsed = vars(ap.parse_args([]))
    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    assert set(parsed) == fields
    assert dataclasses.asdict(TrainOptions.from_mapping(parsed)) == dataclasses.asdict(TrainOptions())


def test_the_recipe_leaves_out_where_files_go_and_is_what_a_resume_compares() -> None:
    recipe = TrainOptions().recipe()
    assert {"out", "cache", "threads", "progress", "resume", "write_logits", "face_model", "patience"}.isdisjoint(recipe)
    assert {"seed", "epochs", "link", "expression_weight", "data", "teacher"} <= set(recipe)
    assert TrainOptions(seed=5).recipe() != recipe and TrainOptions(out="elsewhere").recipe() == recipe
