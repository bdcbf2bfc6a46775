"""docker/Dockerfile, checked without a Docker engine: hadolint, pinned bases, a
non-root user, no compilers in the final stages, and what each image's install line
pulls in (the agent image: no prophet, pandas, numpy or SQLAlchemy)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
HEAVY = {"prophet", "pandas", "numpy", "sqlalchemy", "sqlmodel", "cmdstanpy", "pvlib"}
COMPILERS = ("build-essential", "gcc", "g++", "clang", "make", "cmake")
FINAL = ("agent", "services")


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install --group dev (pyproject.toml)")
    return found


def _stages(text: str) -> dict[str, tuple[str, str]]:
    """Stage name -> (its FROM image or stage, its instructions with lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: dict[str, tuple[str, str]] = {}
    for block in re.split(r"^(?=FROM )", joined, flags=re.M)[1:]:
        head = re.match(r"FROM (\S+) AS (\S+)", block)
        assert head is not None, block.splitlines()[0]
        stages[head.group(2)] = (head.group(1), block)
    return stages


def _installed_extras(body: str, verb: str) -> set[str]:
    """The extras of wattmesh in a stage's ``pip <verb>`` line (exactly one)."""
    found = re.findall(rf"pip {verb} [^'\n]*'(?:wattmesh|\.)\[([a-z,]+)\]", body)
    assert len(found) == 1, found
    return set(found[0].split(","))


def _closure(extras: set[str]) -> set[str]:
    """Every distribution that ``wattmesh[extras]`` pulls in, from the installed metadata
    (this environment installed wattmesh with all its extras): the packages an image
    with this install line gets, markers evaluated for Linux and this Python."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [("wattmesh", frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        names.add(name)
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            env = {"sys_platform": "linux", "platform_system": "Linux"}
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in (wanted or {""})
            ):
                continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return names


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [_tool("hadolint"), str(DOCKERFILE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_notice_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:latest\nRUN apt-get install -y gcc\nUSER root\nCMD ["x"]\n')
    result = subprocess.run(
        [_tool("hadolint"), str(bad)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "DL3007" in result.stdout and "DL3002" in result.stdout  # latest tag; root user


def test_bases_are_pinned_and_final_stages_have_no_compilers_and_no_root() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1))
    stages = _stages(text)
    assert list(stages) == ["builder", "runtime", "agent", "services"]
    assert stages["builder"][0] == stages["runtime"][0] == "${PYTHON_IMAGE}"
    assert "build-essential" in stages["builder"][1]
    for name in ("runtime", *FINAL):
        parent, body = stages[name]
        assert parent in ("${PYTHON_IMAGE}", "runtime"), name
        assert "apt-get" not in body and not any(c in body.split() for c in COMPILERS), name
        # wheels come in through a bind mount of the builder: nothing of it is copied
        assert "COPY --from=builder" not in body, name
    for name in FINAL:
        users = re.findall(r"^USER (\S+)$", stages[name][1], flags=re.M)
        assert users == ["10001:10001"], name
        assert "pip install --no-index" in stages[name][1], name
    assert "useradd --system --uid 10001 --gid 10001" in stages["runtime"][1]
    assert "install -d -o wattmesh -g wattmesh -m 0700 /var/lib/wattmesh" in stages["runtime"][1]


def test_each_image_installs_the_wheels_its_builder_made() -> None:
    stages = _stages(DOCKERFILE.read_text())
    builder = stages["builder"][1]
    for name in FINAL:
        extras = _installed_extras(stages[name][1], "install")
        assert f"source=/wheels/{name}," in stages[name][1]
        built = re.search(rf"pip wheel --wheel-dir /wheels/{name} '\.\[([a-z,]+)\]'", builder)
        assert built is not None and set(built.group(1).split(",")) == extras, name


def test_the_agent_image_installs_no_forecasting_or_sql_stack() -> None:
    stages = _stages(DOCKERFILE.read_text())
    extras = _installed_extras(stages["agent"][1], "install")
    assert extras == {"agent", "modbus"}
    pulled = _closure(extras)
    assert {"pydantic", "dsmr-parser", "pymodbus", "aiomqtt", "cryptography"} <= pulled
    assert pulled & HEAVY == set(), pulled & HEAVY


def test_the_services_image_installs_what_the_services_need() -> None:
    """The same resolution over the services image finds the heavy packages, so the
    agent's check above would notice them."""
    stages = _stages(DOCKERFILE.read_text())
    extras = _installed_extras(stages["services"][1], "install")
    assert extras == {"ledger", "forecasting", "dashboard"}
    pulled = _closure(extras)
    assert {"prophet", "pandas", "numpy", "sqlalchemy", "psycopg", "aiohttp"} <= pulled
    assert "amqtt" not in pulled and "playwright" not in pulled  # no sim, no dev tools


def test_the_build_context_leaves_secrets_and_the_virtualenv_out() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"  # an allow-list: a neighbourhood folder anywhere stays out
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set(re.findall(r"^COPY (\S+) ", DOCKERFILE.read_text(), flags=re.M))
    copied |= {"pyproject.toml", "README.md"}
    assert allowed == copied
