"""The format specs are the one place a format's traits live: every table keyed by format
names agrees with them, and every package's answer comes from them."""

from typing import get_args

import pytest

from pmpo_ray.pmpo.loss import NEEDS_REJECTED, OBJECTIVES, resolve_objective
from pmpo_ray.tasks.config import TaskConfig, TaskFormat
from pmpo_ray.tasks.format_specs import (
    FORMAT_SPECS,
    format_spec,
    formats_help,
    known_format_spec,
)
from pmpo_ray.tasks.formats import CONVERTERS


def test_one_spec_per_config_format_and_one_converter_each():
    assert tuple(FORMAT_SPECS) == get_args(TaskFormat)
    assert set(CONVERTERS) == set(FORMAT_SPECS)
    assert all(name == spec.name for name, spec in FORMAT_SPECS.items())


def test_traits_of_each_format():
    supervised, choice, preference = (format_spec(n) for n in get_args(TaskFormat))
    assert (supervised.has_options, supervised.has_rejected_answers) == (False, False)
    assert (choice.has_options, choice.has_rejected_answers) == (True, True)
    assert (preference.has_options, preference.has_rejected_answers) == (False, True)
    assert [s.answer_check for s in FORMAT_SPECS.values()] == ["generated", "option", "pairwise"]
    assert [s.generates_answers for s in FORMAT_SPECS.values()] == [True, True, False]
    # Options are answers to choose among, so a format with options has rejected answers.
    assert all(s.has_rejected_answers for s in FORMAT_SPECS.values() if s.has_options)


def test_default_objectives_are_objectives_the_loss_knows():
    for spec in FORMAT_SPECS.values():
        assert spec.default_objective in OBJECTIVES
        assert resolve_objective("auto", spec.name) == spec.default_objective
        # A default objective never needs what the format lacks.
        assert spec.has_rejected_answers or spec.default_objective not in NEEDS_REJECTED


def test_objectives_come_from_the_literal():
    assert OBJECTIVES == ("ce", "preference", "ce_plus_preference")
    assert NEEDS_REJECTED == ("preference", "ce_plus_preference")


def test_rejected_answer_objectives_name_the_formats_that_have_them():
    with pytest.raises(ValueError, match="use a multiple_choice or preference task"):
        resolve_objective("preference", "supervised")


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown task format 'ranking'; known: supervised, "):
        format_spec("ranking")
    # Read back from a file: unknown, missing or not a name at all is simply no spec.
    assert known_format_spec("ranking") is None
    assert known_format_spec(None) is None and known_format_spec(["preference"]) is None
    assert known_format_spec("preference") is FORMAT_SPECS["preference"]


def test_the_config_help_lists_each_format():
    assert (
        TaskConfig.model_fields["format"].description
        == formats_help()
        == (
            "supervised: input -> target; multiple_choice: a question with options, the "
            "distractors kept as rejected answers; preference: instruction, chosen, rejected."
        )
    )
