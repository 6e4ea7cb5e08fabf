"""The temporary PROMETHEUS_MULTIPROC_DIR of a `serve` master, and the removal of stale ones.

A master removes its directory when it exits; a master killed with -9 cannot. Its directory
name carries its pid, so the next start removes directories whose master is gone.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

log = logging.getLogger("scaivault.server")

PREFIX = "scaivault-metrics-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-")


def create_master_directory() -> str:
    """A fresh directory named after this (master) process."""
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def remove_stale_directories(parent: str | None = None) -> list[str]:
    """Remove metrics directories of masters that no longer run; returns the removed paths."""
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = _NAME.match(name)
        path = os.path.join(parent, name)
        if not match or not os.path.isdir(path) or _is_scaivault_process(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed metrics directories left by masters that were killed", extra={"count": len(removed)})
    return removed


def _is_scaivault_process(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return True              # alive and unknown: never remove what may be in use
    # the pid was reused by an unrelated process: the directory's master is gone
    return b"scaivault" in cmdline or b"gunicorn" in cmdline
