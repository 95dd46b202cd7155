"""The package rules, read from the code: every import of every module, lazy ones included, points the right way.

- ``metrics`` is pure computation: the standard library, NumPy, Numba, datasketches, SciPy, scikit-learn and itself;
- ``sinks`` imports ``metrics`` and storage libraries, never ``streams`` or ``api``;
- ``api`` imports ``sinks`` and ``metrics``, never ``streams`` (it reads what the sinks wrote);
- inside ``streams``: the SDK imports nothing else of evalstream; the embedding serving and the Faust extensions
  know nothing of the worker; only the CLI and the local tooling import the local tooling.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metrics", "sinks", "api", "streams")
PURE = {"numpy", "numba", "datasketches", "scipy", "sklearn", "metrics"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str) -> set[str]:
    """Every module ``source`` imports, anywhere in it (relative imports resolved against ``module``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module and node.module != "__future__":
                found.add(node.module)
    return found


CLI = ("streams.cli", "streams.cli_kafka")  # the command line may start local tooling


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(module: str, imported: set[str]) -> list[str]:
    """The imports of ``module`` that break a package rule, each with the rule it breaks."""
    bad = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if within(module, "metrics") and top not in PURE and top not in sys.stdlib_module_names:
            bad.append(f"{module} -> {name}: metrics is pure computation")
        elif within(module, "sinks") and top in ("streams", "api"):
            bad.append(f"{module} -> {name}: sinks import only metrics")
        elif within(module, "api") and top == "streams":
            bad.append(f"{module} -> {name}: the API reads what the sinks wrote, never the worker")
        elif within(module, "streams.sdk") and top in PACKAGES and not within(name, "streams.sdk"):
            bad.append(f"{module} -> {name}: the SDK stands alone")
        elif within(module, "streams.sdk") and top in ("faust", "torch", "onnxruntime", "numba", "duckdb"):
            bad.append(f"{module} -> {name}: the SDK stays light")
        elif (within(module, "streams.embedding") or within(module, "streams.faust_ext")) and (
            within(name, "streams.worker") or within(name, "streams.local") or top in ("sinks", "api")
        ):
            bad.append(f"{module} -> {name}: serving and Faust extensions know nothing of the worker")
        elif within(module, "streams.alerts") and (within(name, "streams.worker") or within(name, "streams.local")):
            bad.append(f"{module} -> {name}: the alerting agent runs without the scoring worker")
        elif within(name, "streams.local") and not within(module, "streams.local") and module not in CLI:
            bad.append(f"{module} -> {name}: local tooling is never on the production path")
    return bad


def all_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_import_points_the_right_way() -> None:
    found = [
        v
        for path in all_modules()
        for v in violations(module_name(path), imports_of(path.read_text(), module_name(path)))
    ]
    assert found == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("metrics.x", "import faust", "metrics is pure"),
        ("metrics.x", "def f():\n    from streams.embedding.model import MODEL_NAME", "metrics is pure"),
        ("metrics.x", "import pyarrow as pa", "metrics is pure"),
        ("sinks.x", "from streams.worker.rows import event_row", "sinks import only metrics"),
        ("api.deps", "from streams.settings import Settings", "never the worker"),
        ("streams.sdk.schema", "from streams.settings import Settings", "the SDK stands alone"),
        ("streams.sdk.publisher", "import torch", "the SDK stays light"),
        ("streams.embedding.stage", "from streams.worker.scoring import Score", "know nothing of the worker"),
        ("streams.faust_ext.batching", "from sinks.parquet import PartitionedParquetWriter", "know nothing of"),
        ("streams.worker.app", "from streams.local.sample import generate", "never on the production path"),
        ("streams.worker.x", "from ..local import demo", "never on the production path"),
    ],
)
def test_the_rules_catch_a_wrong_arrow(module: str, source: str, rule: str) -> None:
    (found,) = violations(module, imports_of(source, module))
    assert rule in found


def test_the_rules_allow_the_right_arrows() -> None:
    allowed = {
        "metrics.novelty": "import numpy\nfrom metrics.levenshtein import distance_index_pairs\nimport threading",
        "sinks.catalog": "import duckdb\nfrom metrics.similarity import EMBEDDING_DIM",
        "api.deps": "from sinks.catalog import connect\nfrom api.settings import get_settings",
        "streams.worker.app": "from streams.embedding.encoder import load_encoder\nfrom sinks.parquet import x",
        "streams.cli": "from streams.local.demo import run_demo",
    }
    for module, source in allowed.items():
        assert violations(module, imports_of(source, module)) == [], module


def test_modules_stay_small() -> None:
    """Past ~400 lines a module holds more than one idea (the Numba kernels are one long idea)."""
    long = {module_name(p): n for p in all_modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long.keys() <= {"metrics.levenshtein.kernels"}, long


def test_importing_the_sdk_loads_no_worker_machinery() -> None:
    heavy = ("faust", "mode", "aiokafka", "torch", "onnxruntime", "sentence_transformers", "numba", "duckdb", "pyarrow")
    code = (
        "import sys, streams.sdk, streams.sdk.schema, streams.sdk.publisher\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == ""
    assert streams_sdk_exports() >= {"Publisher", "parse_event", "validate_event", "GenerationEvent"}


def streams_sdk_exports() -> set[str]:
    import streams.sdk

    return set(streams.sdk.__all__)


def test_the_faust_extensions_name_tests_that_exist() -> None:
    """Each private-API use lists the tests that would catch its breakage on a Faust upgrade: they must exist."""
    import re

    import streams.faust_ext

    named = set(re.findall(r"``(tests/[\w/]+\.py)``", streams.faust_ext.__doc__ or ""))
    assert len(named) >= 3
    assert [path for path in sorted(named) if not (ROOT / path).is_file()] == []
