"""A fresh install is the install CI tested: the README's commands and .ci/run use
constraints.txt, and it pins every package a test install brings.

Without it a new machine got Babel 2.19, whose data changed rupiah amounts, and its
own tests failed; a later release of Babel, tzdata or phonenumbers could change a
format or a rule the same way."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . && .venv/bin/encore demo"
TEST_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test]' "
                "&& .venv/bin/python -m pytest")


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line.strip())
            assert match, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _installed_requirements(project: str, extras: frozenset[str]) -> dict[str, str]:
    """Every distribution `project[extras]` pulls in, transitively, with its installed version."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(project, extras)]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        dist = metadata.distribution(name)
        found[key] = dist.version
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra})
                                                 for extra in wanted | {""}):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return found


def test_the_readme_commands_and_ci_install_the_pinned_versions():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()

    assert DEMO_COMMAND in readme
    assert TEST_COMMAND in readme
    assert ci.rstrip().splitlines()[-1] == TEST_COMMAND  # CI ends with the README's test command
    installs = [line for line in ci.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    pinned = [line for line in installs if "-c constraints.txt" in line]
    unpinned = [line for line in installs if line not in pinned]
    assert len(pinned) == 2, installs  # the linters' venv and the README's test command
    assert len(unpinned) == 1 and ".venv-latest" in unpinned[0] and "--upgrade" in unpinned[0], unpinned


def test_constraints_pin_exactly_the_packages_of_a_test_install_at_the_versions_tested():
    # What this suite runs on is what constraints.txt gives a fresh machine: a dependency added to
    # pyproject.toml without a pin, a pin left behind, or a venv installed without the file shows here
    installed = _installed_requirements("encore", frozenset({"test"}))
    installed.pop("encore")

    pins = _pins()
    assert sorted(set(installed) - set(pins)) == [], "installed but not pinned"
    assert sorted(set(pins) - set(installed)) == [], "pinned but no longer required"
    assert {name: version for name, version in installed.items() if pins[name] != version} == {}
