"""``python -m wattmesh.cli``: the ``wattmesh`` command."""

import sys

from wattmesh.cli.dispatch import main

if __name__ == "__main__":  # not when a tool imports every module (pkgutil)
    sys.exit(main())
