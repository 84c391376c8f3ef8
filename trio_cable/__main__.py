"""``python -m trio_cable``: the ``trio-cable`` command."""

from .cli import main

if __name__ == "__main__":
    main()
