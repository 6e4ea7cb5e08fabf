"""Helpers for the foundation tests: free ports, CLI subprocesses, a served instance, a private
redis-server, and test certificates (CA, server, client) made with `cryptography`."""
from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

CLI = [sys.executable, "-m", "scaivault.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(env: dict) -> dict:
    """The process environment plus `env`, without ScaiVault variables leaking in from the shell."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "KMS_", "TLS_"))}
    return {**base, **env}


def run_cli(args: list[str], env: dict, timeout: float = 60, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=child_env(env), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on {port} within {timeout}s")


class ServedInstance:
    """`scaivault serve` in a subprocess on a free port; stop() sends SIGTERM and collects stderr."""

    def __init__(self, env: dict, args: tuple[str, ...] = ("serve",)):
        self.port = free_port()
        self.env = {"BIND_ADDRESS": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": "1", **env}
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.stderr = ""

    def start(self) -> "ServedInstance":
        # a file, not a pipe: nobody drains a pipe while the server runs, and a full one blocks it
        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(CLI + self.args, env=child_env(self.env), stdout=subprocess.DEVNULL,
                                     stderr=self._log, text=True, start_new_session=True)
        try:
            wait_for_port(self.port, self.proc)
        except AssertionError:
            self._log.seek(0)
            raise AssertionError(f"server did not start: {self._log.read()[-3000:]}") from None
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("TLS_CERT_FILE") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        self.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.seek(0)
        self.stderr = self._log.read()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "ServedInstance":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.returncode is None:
            self.stop()


class RedisServer:
    """A private redis-server on a free port (so tests may pause or stop it without harming others)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (tests/run.sh installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def get_ready(url: str, timeout: float = 30.0, **kwargs) -> requests.Response:
    """Poll /v1/health/ready until 200 (returns the last response when the time is up)."""
    deadline = time.monotonic() + timeout
    response = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(url + "/v1/health/ready", timeout=5, **kwargs)
            if response.status_code == 200:
                return response
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return response


# ----------------------------------------------------------------------------- certificates

@dataclass
class CertificateSet:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> CertificateSet:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("ScaiVault test CA")).issuer_name(name("ScaiVault test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage, sans):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                              [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key, client = leaf("test-client", ExtendedKeyUsageOID.CLIENT_AUTH, None)

    pki = CertificateSet(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                  directory / "client.pem", directory / "client.key")
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pki.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, pki.server_key)
    write_key(client_key, pki.client_key)
    return pki
