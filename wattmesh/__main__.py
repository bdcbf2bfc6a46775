"""``python -m wattmesh``: the ``wattmesh`` command."""

import sys

from wattmesh.cli.main import main

sys.exit(main())
