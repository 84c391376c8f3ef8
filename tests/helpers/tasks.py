"""Helpers for tests that check no task is left behind."""

from __future__ import annotations

import trio
import trio.lowlevel


def all_tasks() -> set[trio.lowlevel.Task]:
    """Every task in this trio run, walking down from the root task."""
    found: set[trio.lowlevel.Task] = set()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None:
            continue
        found.add(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return found


def task_count() -> int:
    """How many tasks this trio run has (see :func:`all_tasks`)."""
    return len(all_tasks())
