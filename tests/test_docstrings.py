"""Every docstring example in the packages runs and shows what the code does (docs that match behaviour)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

MODULES = sorted(
    info.name
    for package in ("metrics", "streams", "sinks", "api")
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"
