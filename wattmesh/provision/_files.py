"""Writing provisioned files: exact modes, and owners when running as root (I/O)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["Writer"]

SECRET_MODE = 0o600
DIR_MODE = 0o700


class Writer:
    """Writes files with exact modes (the umask cannot widen or narrow them) and
    records which uid each folder's files belong to; :meth:`chown` applies the owners
    when the process may (root), else returns what to run."""

    def __init__(self) -> None:
        self._owners: dict[Path, int] = {}

    def folder(self, path: Path, *, uid: int | None) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)
        if uid is not None:
            self._owners[path] = uid
        return path

    def file(self, path: Path, data: bytes | str, *, mode: int = SECRET_MODE) -> Path:
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, raw)
        finally:
            os.close(fd)
        return path

    def chown(self) -> list[str]:
        """Give each recorded folder and its files to its uid (as root); otherwise the
        ``chown`` commands an operator must run, one line each."""
        if os.geteuid() != 0:
            return [f"chown -R {uid}:{uid} {path}" for path, uid in sorted(self._owners.items())]
        for path, uid in self._owners.items():
            os.chown(path, uid, uid)
            for child in path.rglob("*"):
                os.chown(child, uid, uid, follow_symlinks=False)
        return []
