"""Every docstring example in the packages runs and shows what the code does (docs that match behaviour).

The rule, checked for every docstring (module, class, function) of every module under ``metrics``, ``streams``,
``sinks`` and ``api``:

1. No example is skipped (``# doctest: +SKIP``): a ``>>>`` line is run. A snippet that cannot run here, because it
   needs a Kafka broker, the embedding model, the network or a running Faust app, is written as a plain literal
   block without ``>>>`` under a heading that does not say "Example" (e.g. ``Usage::``).
2. A docstring that says "Example" (a line starting with ``Example``, the section heading) or holds any ``>>>``
   line has at least one example that checks an output: a ``>>>`` line followed by its expected output (or
   traceback). Lines that only set things up assert nothing, so they alone are not an example.
3. Every example passes (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE`` on).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import types

import pytest

MODULES = sorted(
    info.name
    for package in ("metrics", "streams", "sinks", "api")
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}.")
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
EXAMPLE_HEADING = re.compile(r"^\s*Examples?\b", re.MULTILINE)


def _checks_output(example: doctest.Example) -> bool:
    return not example.options.get(doctest.SKIP) and bool(example.want.strip() or example.exc_msg)


def rule_violations(tests: list[doctest.DocTest]) -> list[str]:
    """What breaks rules 1 and 2 in these docstrings (one line each)."""
    problems = []
    for test in tests:
        skipped = [e for e in test.examples if e.options.get(doctest.SKIP)]
        if skipped:
            lines = ", ".join(str((test.lineno or 0) + e.lineno + 1) for e in skipped)
            problems.append(
                f"{test.name}: {len(skipped)} skipped example(s) at line(s) {lines}: make it run, or write it "
                "as a literal block without >>> under a heading that is not 'Example'"
            )
        claims = EXAMPLE_HEADING.search(test.docstring or "") is not None or bool(test.examples)
        if claims and not any(_checks_output(e) for e in test.examples):
            problems.append(f"{test.name}: has an Example section or >>> lines but no example that checks an output")
    return problems


def _tests(module: types.ModuleType) -> list[doctest.DocTest]:
    return [t for t in doctest.DocTestFinder().find(module) if t.docstring]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    tests = _tests(module)
    assert rule_violations(tests) == []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} docstring examples in {name} failed:\n" + "".join(report)
    )


def _module(doc: str) -> types.ModuleType:
    return types.ModuleType("fake", doc)


SKIPPED = "1 skipped example(s)"
CHECKS_NOTHING = "no example that checks an output"


@pytest.mark.parametrize(
    ("doc", "problems"),
    [
        (">>> 1 + 1  # doctest: +SKIP\n2\n", [SKIPPED, CHECKS_NOTHING]),
        ("Example::\n\n    >>> x = 1  # doctest: +SKIP\n", [SKIPPED, CHECKS_NOTHING]),
        ("Example::\n\n    >>> x = 1\n    >>> y = 2  # doctest: +SKIP\n    2\n", [SKIPPED, CHECKS_NOTHING]),
        ("Example::\n\n    >>> x = 1\n    >>> y = x\n", [CHECKS_NOTHING]),
        ("Example::\n\n    make_it()  # needs a broker\n", [CHECKS_NOTHING]),
        ("Setup::\n\n    >>> x = 1\n", [CHECKS_NOTHING]),
    ],
)
def test_the_rule_rejects_examples_that_check_nothing(doc: str, problems: list[str]) -> None:
    """Skipped examples, and Example sections or >>> lines without a checked output, are each reported."""
    found = rule_violations(_tests(_module(doc)))
    assert len(found) == len(problems), found
    for line, problem in zip(found, problems, strict=True):
        assert problem in line


@pytest.mark.parametrize(
    "doc",
    [
        "Example::\n\n    >>> x = 1\n    >>> x + 1\n    2\n",
        "Example::\n\n    >>> int('x')\n    Traceback (most recent call last):\n    ValueError: ...\n",
        "Usage (needs a broker)::\n\n    broker = LocalBroker.start()\n",
        "No examples at all; an example of prose is fine.",
    ],
)
def test_the_rule_accepts_examples_that_check_an_output(doc: str) -> None:
    """An example that checks an output, a usage block without >>>, or no example at all passes rules 1 and 2."""
    assert rule_violations(_tests(_module(doc))) == []
