"""Tables the command line prints for people at a terminal (rich).

Example (an answer with no cluster)::

    >>> print_clusters({"since": "2026-11-30T00:00:00Z", "until": "2026-12-01T00:00:00Z", "data": [],
    ...                 "generations": 10, "without_embeddings": 0, "failures": 1, "baseline_failure_rate": 0.1,
    ...                 "noise": 1, "signals": ["error"], "reason": "too few failures to cluster: 1 (at least 20)"},
    ...                width=100)  # doctest: +ELLIPSIS
    Failure clusters 2026-11-30T00:00:00Z - 2026-12-01T00:00:00Z
    ...
    10 generations (0 without embeddings left out), 1 failures (10.0%), 1 in no cluster; signals: error
    too few failures to cluster: 1 (at least 20)
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_clusters(answer: dict[str, Any], width: int | None = None) -> None:
    """``GET /v1/clusters``'s answer as a table, then the window's counts and the reason when nothing is listed."""
    table = Table(title=f"Failure clusters {answer['since']} - {answer['until']}")
    for column in ("#", "id", "label", "size", "failures", "rate", "lift", "p", "top signal", "top model"):
        table.add_column(
            column, justify="right" if column in ("#", "size", "failures", "rate", "lift", "p") else "left"
        )
    for c in answer["data"]:
        signal = max(c["signals"], key=c["signals"].get)
        model = c["models"][0]["model"] if c["models"] else ""
        table.add_row(
            str(c["rank"]), c["cluster_id"], c["label"], str(c["size"]), str(c["failures"]),
            f"{c['failure_rate']:.0%}", f"{c['lift']:.1f}", f"{c['p_value']:.0e}", signal, str(model),
        )  # fmt: skip
    console = Console(width=width)
    console.print(table)
    rate = answer["baseline_failure_rate"]
    console.print(
        f"{answer['generations']} generations ({answer['without_embeddings']} without embeddings left out), "
        f"{answer['failures']} failures ({'-' if rate is None else f'{rate:.1%}'}), {answer['noise']} in no cluster; "
        f"signals: {', '.join(answer['signals'])}"
    )
    if answer["reason"]:
        console.print(answer["reason"])
