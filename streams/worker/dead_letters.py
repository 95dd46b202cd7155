"""Dead letters: a message the worker cannot score goes to the dead-letter topic with the reason, and is counted.

The message keeps its original key and value bytes; the headers say why (``evalstream-reason``) and where it
came from (``evalstream-source``: ``topic:partition:offset``). The worker also writes it to the ``dlq`` dataset.

Example::

    >>> dead_letter_headers("invalid JSON", "llm.events", 3, 42)[1]
    ('evalstream-source', b'llm.events:3:42')
"""

from __future__ import annotations

REASON_HEADER = "evalstream-reason"
SOURCE_HEADER = "evalstream-source"


MAX_REASON_CHARS = 2000  # a validation error can quote the input: the header stays small beside the message


def dead_letter_headers(reason: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The headers of a dead letter: its reason (cut to ``MAX_REASON_CHARS``) and its source coordinates."""
    reason = reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"
    source = f"{topic}:{partition}:{offset}"
    return [(REASON_HEADER, reason.encode("utf-8", "replace")), (SOURCE_HEADER, source.encode())]
