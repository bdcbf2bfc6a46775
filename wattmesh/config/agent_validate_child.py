"""Runs :mod:`wattmesh.config.agent_validate` (pydantic) in a short-lived child process.

Standard library only, so that ``wattmesh agent`` can start the child first and do
its own imports while the child validates (two cores do both at once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wattmesh.config.agent_schema import AgentSection

VALIDATE_TIMEOUT_S = 120.0


class ValidationChild:
    """``python -m wattmesh.config.agent_validate PATH``, started at construction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._process = subprocess.Popen(
            [sys.executable, "-m", "wattmesh.config.agent_validate", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def result(
        self, timeout_s: float = VALIDATE_TIMEOUT_S
    ) -> tuple[AgentSection | None, list[str]]:
        """The validated sections, or None and every problem (TOML path first)."""
        from wattmesh.config.agent_schema import sections_from_json

        try:
            out, err = self._process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return None, [f"cannot validate the configuration: no answer in {timeout_s:g} s"]
        if self._process.returncode != 0:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return None, [
                f"cannot validate the configuration (exit {self._process.returncode}): {last[0]}"
            ]
        # JSON, not pickle: the json module is loaded anyway, pickle would cost 0.3 MB.
        result = json.loads(out)
        if "sections" in result:
            return sections_from_json(result["sections"]), []
        return None, [str(p) for p in result["problems"]]
