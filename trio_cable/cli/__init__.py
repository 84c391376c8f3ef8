"""The ``trio-cable`` command: serve, demo, listen, perform, broadcast, stats.

Output: data goes to stdout as JSON lines; status and errors go to stderr
(coloured on a terminal, unless ``NO_COLOR`` is set), or as JSON objects
with ``--json``. Exit codes: see :data:`EXIT_CODES`.

Layout: ``_parser`` builds the command line from ``_args``' types;
``_serve`` (with ``_target`` loading ``MODULE:ATTR``), ``_client``
(listen, perform), ``_remote`` (broadcast, stats) run the commands;
``_output`` reports; ``_main`` is the entry point.
"""

from ._main import main as main
from ._output import EXIT_CODES as EXIT_CODES

__all__ = ["EXIT_CODES", "main"]
