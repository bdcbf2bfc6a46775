"""What every benchmark prints first: the machine it ran on."""

from __future__ import annotations

import os
import platform


def machine_line() -> str:
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
