"""README is the front door: its event examples must be valid, one per type, and no link in it
or in docs/ may lead nowhere."""

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


_DOCS_DIR = os.path.join(os.path.dirname(README), "docs")
DOCS = [README, *sorted(os.path.join(_DOCS_DIR, n) for n in os.listdir(_DOCS_DIR) if n.endswith(".md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCED = re.compile(r"```.*?```", re.S)


def _anchors(text):
    """The anchors GitHub makes of a Markdown file's headings."""
    text = _FENCED.sub("", text)  # a comment in a shell example is no heading
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        anchor, n = slug, 1
        while anchor in found:
            anchor, n = f"{slug}-{n}", n + 1
        found.add(anchor)
    return found


def test_every_link_in_the_docs_leads_somewhere():
    broken = []
    for path in DOCS:
        text = open(path).read()
        here = os.path.dirname(path)
        for target in _LINK.findall(_FENCED.sub("", text)):
            if re.match(r"[a-z]+:", target):
                continue  # another site's page: not checked offline
            file, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(here, file)) if file else path
            if not os.path.exists(linked):
                broken.append(f"{os.path.basename(path)}: {target} (no such file)")
            elif anchor and linked.endswith(".md") and anchor not in _anchors(open(linked).read()):
                broken.append(f"{os.path.basename(path)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
