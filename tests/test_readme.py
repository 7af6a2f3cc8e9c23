"""README is the front door: its event examples must be valid, one per type."""

from __future__ import annotations

import os
import re

import orjson

from flowledger.domain.vocabulary import EVENT_TYPES, validate_event

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _vocabulary_examples():
    text = open(README).read()
    section = text.split("## The event vocabulary", 1)[1].split("\n## ", 1)[0]
    return [orjson.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, re.S)]


def test_the_readme_shows_one_valid_example_of_every_event_type():
    examples = _vocabulary_examples()
    for example in examples:
        validate_event(example)
    assert sorted(e["type"] for e in examples) == sorted(EVENT_TYPES)


def test_the_readme_test_command_is_what_ci_runs():
    ci = open(os.path.join(os.path.dirname(README), ".ci", "run")).read()
    readme = open(README).read()
    assert "pip install -e '.[test]'" in readme and "pip install --quiet -e '.[test]'" in ci
    assert "\npytest\n" in readme and ci.rstrip().endswith("pytest")
