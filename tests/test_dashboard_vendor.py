"""The vendored chart library is the pinned release, with its licence beside it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parent.parent / "dashboard" / "static" / "vendor"
PINNED = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}


@pytest.mark.parametrize(("name", "sha256"), sorted(PINNED.items()))
def test_vendored_file_is_the_pinned_release(name: str, sha256: str) -> None:
    assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == sha256
    assert sha256 in (VENDOR / "VENDOR.md").read_text(encoding="utf-8")


def test_licence_is_vendored_beside_it() -> None:
    assert "MIT License" in (VENDOR / "uPlot.LICENSE").read_text(encoding="utf-8")
