"""Validates the sections of ``agent.toml`` with pydantic (unknown keys rejected).

:func:`validate_sections` turns the parsed TOML into a :class:`AgentSection` or lists
every problem with its TOML path. ``wattmesh agent`` runs it in a short-lived child
process, ``python -m wattmesh.config.agent_validate PATH``, which writes the result as JSON
to stdout (:func:`wattmesh.config.agent_schema.sections_from_json` reads it back), so that
pydantic is never loaded into the long-running agent (see BENCHMARKS.md);
``--validate-config`` and the tests call it in-process. File checks
(keys, modes, TLS) come after, in :mod:`wattmesh.config.agent_config`.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from wattmesh.config.agent_schema import (
    METER_KINDS,
    AgentSection,
    MeterSection,
    ReplaySection,
)

_UNKNOWN_KEY = {"extra_forbidden", "unexpected_keyword_argument"}


def _problems(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in (*prefix, *error["loc"])) or "(top level)"
        message = error["msg"]
        if error["type"] in _UNKNOWN_KEY:
            message = "unknown key"
            if where.endswith("password"):
                message += " (secrets are read from files: use password_file)"
        problems.append(f"{where}: {message}")
    return problems


def _meter(raw: object) -> tuple[MeterSection | None, list[str]]:
    """The ``[meter]`` section, validated as the kind it names."""
    if not isinstance(raw, Mapping):
        return None, ["meter: expected a [meter] table"]
    section = METER_KINDS.get(str(raw.get("kind")))
    if section is None:
        if "kind" not in raw:
            return None, ["meter.kind: Field required"]
        kinds = list(METER_KINDS)
        return None, [f"meter: unknown meter kind; expected {', '.join(kinds[:-1])} or {kinds[-1]}"]
    try:
        return TypeAdapter(section).validate_python(raw), []
    except ValidationError as exc:
        return None, _problems(exc, ("meter",))


def validate_sections(raw: Mapping[str, object]) -> tuple[AgentSection | None, list[str]]:
    """The validated sections, or None and every problem (TOML path first)."""
    data = dict(raw)
    problems: list[str] = []
    if "meter" in data:
        meter, problems = _meter(data["meter"])
        # A placeholder lets the other sections be checked even if the meter is bad.
        data["meter"] = meter or ReplaySection("replay", "")
    try:
        agent = TypeAdapter(AgentSection).validate_python(data)
    except ValidationError as exc:
        problems += _problems(exc)
        agent = None
    if problems or agent is None:
        return None, problems
    return agent, []


def read_toml(path: Path) -> tuple[dict[str, object] | None, str | None]:
    """The parsed file, or None and why it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), None
    except OSError as exc:
        return None, f"cannot read the file: {exc.strerror}"
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return None, f"not valid TOML: {exc}"


def validate_file(path: Path) -> tuple[AgentSection | None, list[str]]:
    raw, problem = read_toml(path)
    if raw is None:
        return None, [problem or "cannot read the file"]
    return validate_sections(raw)


def main(argv: list[str]) -> int:
    """``python -m wattmesh.config.agent_validate PATH``: the result as JSON on stdout.

    ``{"sections": ...}`` (``dataclasses.asdict``) when valid, else ``{"problems": [...]}``.
    """
    (path,) = argv
    model, problems = validate_file(Path(path))
    result = {"problems": problems} if model is None else {"sections": asdict(model)}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
