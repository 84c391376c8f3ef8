"""The JavaScript client's unit tests (``js/test/``, ``node --test`` in js/,
on ``trio_cable/static/cable.js``), run by pytest so that ``nox -s tests``
covers them: frames, backoff, resubscribe, stale connections, with a fake
WebSocket and fake timers."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.interop.nodeclient import JS_DIR, skip_unless_node

pytestmark = pytest.mark.node


def test_cable_js_unit_tests() -> None:
    skip_unless_node()
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    assert passed is not None, result.stdout
    assert int(passed.group(1)) >= 15, "the JS tests were not found"
