"""Which event a table write belongs to: Faust routes it to the changelog partition of the *current* event.

The next ``table[key] = value`` in the same task goes to the changelog partition of the event set here.

Example (an object that can be weakly referenced stands in for a Faust event; each task has its own context)::

    >>> import contextvars
    >>> from faust.streams import current_event
    >>> class Event: ...
    >>> event = Event()
    >>> def in_a_task():
    ...     set_current_event(event)
    ...     return current_event() is event
    >>> contextvars.copy_context().run(in_a_task)
    True
    >>> current_event() is None  # other tasks' current event is untouched
    True
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
