"""Which event a table write belongs to: Faust routes it to the changelog partition of the *current* event.

Example::

    >>> set_current_event(event)  # the next table[key] = value goes to event's partition   # doctest: +SKIP
"""

from __future__ import annotations

import weakref

from faust.streams import _current_event
from faust.types import EventT


def set_current_event(event: EventT) -> None:
    """Make ``event`` the current event of this task, so table writes go to its changelog partition.

    Only the task-local context variable is set: ``Stream._set_current_event`` would also overwrite the
    stream's shared ``current_event`` attribute, which the batch buffering task reads concurrently.
    """
    _current_event.set(weakref.ref(event))
