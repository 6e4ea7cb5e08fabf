"""`scaivault dev`: from an empty directory, with no database or Redis of its own, the whole service
becomes ready; Ctrl-C stops it and its embedded PostgreSQL cleanly; the data directory is kept."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.foundation_support import CLI, child_env, free_port, get_ready


def _start(directory, port):
    env = child_env({"LOG_LEVEL": "info"})
    for name in ("SCAIKEY_URL", "BASE_URL", "LOG_FORMAT"):
        env.pop(name, None)
    return subprocess.Popen(CLI + ["dev", "--bind", f"127.0.0.1:{port}"], cwd=directory, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _ctrl_c(proc) -> tuple[str, str]:
    os.killpg(proc.pid, signal.SIGINT)          # what a terminal does: the whole foreground group
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


@pytest.fixture
def empty_directory():
    # Not pytest's tmp_path: other pytest sessions on this machine reset /tmp/pytest-of-<user> to
    # mode 0700 and prune old runs, which locks out the embedded server's own system user.
    directory = Path(tempfile.mkdtemp(prefix="scaivault-dev-test-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
def test_dev_starts_from_an_empty_directory_and_answers_ready(empty_directory):
    tmp_path = empty_directory
    port = free_port()
    started = time.monotonic()
    proc = _start(tmp_path, port)
    try:
        ready = get_ready(f"http://127.0.0.1:{port}", timeout=90)
        seconds = time.monotonic() - started
        assert ready is not None and ready.status_code == 200, proc.stderr.read() if proc.poll() is not None else ready
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "encryption": "ok", "audit": "ok"}
    finally:
        out, err = _ctrl_c(proc)
    assert proc.returncode == 0, err
    assert seconds < 60, f"scaivault dev took {seconds:.1f} s to become ready"

    data = tmp_path / ".scaivault-dev"
    assert (data / "pgdata" / "PG_VERSION").exists()
    assert not (data / "pgdata" / "postmaster.pid").exists(), "embedded PostgreSQL still running"
    assert "database system is shut down" in (data / "pgdata" / "log").read_text()
    assert f"http://127.0.0.1:{port}" in out
    token_lines = [line for line in out.splitlines() if "SCAIVAULT_TOKEN=" in line]
    if token_lines:   # once the identity area provides dev tokens, the banner prints one that works
        token = token_lines[0].split("SCAIVAULT_TOKEN=", 1)[1].strip()
        assert token.startswith("skt_")

    # a second start reuses the kept data directory and its token works against the API
    proc = _start(tmp_path, port)
    try:
        assert get_ready(f"http://127.0.0.1:{port}", timeout=60).status_code == 200
        if token_lines:
            out_line = None
            deadline = time.monotonic() + 10
            while out_line is None and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if "SCAIVAULT_TOKEN=" in line:
                    out_line = line
            token = out_line.split("SCAIVAULT_TOKEN=", 1)[1].strip()
            whoami = requests.get(f"http://127.0.0.1:{port}/v1/auth/whoami",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=5)
            assert whoami.status_code == 200 and "super_admin" in whoami.json()["roles"]
            # issue 16: the restart reused the first run's token, and `dev token` acts as someone else
            assert token == token_lines[0].split("SCAIVAULT_TOKEN=", 1)[1].strip()
            minted = subprocess.run(CLI + ["dev", "token", "--identity", "sa:api", "--scopes", "secrets:read"],
                                    cwd=tmp_path, env=child_env({}), capture_output=True, text=True, timeout=60)
            assert minted.returncode == 0, minted.stderr
            api = requests.get(f"http://127.0.0.1:{port}/v1/auth/whoami",
                               headers={"Authorization": f"Bearer {minted.stdout.strip()}"}, timeout=5)
            assert api.status_code == 200 and api.json()["identity_id"] == "sa:api"
            assert api.json()["scopes"] == ["secrets:read"]
    finally:
        _, err = _ctrl_c(proc)
    assert proc.returncode == 0, err
    assert not (data / "pgdata" / "postmaster.pid").exists()


@pytest.mark.slow
def test_a_second_dev_on_the_same_data_directory_is_refused_and_the_first_keeps_serving(empty_directory):
    port, other_port = free_port(), free_port()
    first = _start(empty_directory, port)
    try:
        assert get_ready(f"http://127.0.0.1:{port}", timeout=90).status_code == 200
        second = _start(empty_directory, other_port)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert "another `scaivault dev`" in err and str(first.pid) in err
        ready = requests.get(f"http://127.0.0.1:{port}/v1/health/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    finally:
        _, err = _ctrl_c(first)
    assert first.returncode == 0, err
