"""Helpers shared by the test modules (no test module imports another's)."""

from tests.helpers.tasks import all_tasks
from tests.helpers.waiting import LOSS_BOUND, wait_until

__all__ = ["LOSS_BOUND", "all_tasks", "wait_until"]
