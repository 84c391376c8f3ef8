"""What the browser tests share: a headless Chromium (``browser``) and a
browser server of a test's own (``fresh_server``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.browser.browser_driver import (
    Browser,
    BrowserServer,
    open_browser,
    skip_unless_browser,
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with open_browser() as opened:
        yield opened


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[BrowserServer]:
    """A server for this test alone (one it may kill and restart)."""
    skip_unless_browser()
    with BrowserServer(tmp_path) as running:
        yield running
