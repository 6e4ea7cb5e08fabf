"""Real ACME stand-ins for the tests: Debian's pebble (+ pebble-challtestsrv as its DNS), on free ports.

Pebble serves its directory over TLS with a certificate made here (trusted through
ACME_CA_BUNDLE), validates http-01 on `http_port` (where the test serves ScaiVault) and asks
`dns_server` (challtestsrv, or a bind9) for A and TXT records.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.servers import Subprocess, free_port


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP (DNS servers listen on both)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free TCP+UDP port")


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (tests/run.sh installs it)")
    return path


def tls_cert(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _start(argv: list[str], log: Path, env: dict | None = None) -> Subprocess:
    return Subprocess(argv, env=env, log=log).start()


class ChallTestSrv:
    """pebble-challtestsrv as a mock DNS server: every A query answers 127.0.0.1, no AAAA."""

    def __init__(self, workdir: Path):
        self.dns_port = free_tcp_udp_port()
        self.management_port = free_port()
        self.process = _start([need("pebble-challtestsrv"), "-http01", "", "-https01", "", "-tlsalpn01", "",
                                "-dns01", f"127.0.0.1:{self.dns_port}", "-management",
                                f"127.0.0.1:{self.management_port}", "-defaultIPv4", "127.0.0.1",
                                "-defaultIPv6", ""], workdir / "challtestsrv.log")
        _wait_tcp(self.management_port, self.process)

    def stop(self) -> None:
        self.process.stop()


class Pebble:
    def __init__(self, workdir: Path, *, http_port: int, dns_server: str, env: dict | None = None):
        self.workdir = workdir
        self.cert, key = tls_cert(workdir)
        self.port, self.management_port = free_port(), free_port()
        config = {"pebble": {"listenAddress": f"127.0.0.1:{self.port}",
                             "managementListenAddress": f"127.0.0.1:{self.management_port}",
                             "certificate": str(self.cert), "privateKey": str(key), "httpPort": http_port,
                             "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        (workdir / "pebble.json").write_text(json.dumps(config))
        self.process = _start([need("pebble"), "-config", str(workdir / "pebble.json"), "-dnsserver", dns_server],
                               workdir / "pebble.log",
                               env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                                    "PEBBLE_AUTHZREUSE": "0", **(env or {})})
        _wait_tcp(self.port, self.process)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def root_pem(self) -> str:
        """The root that issues this pebble's certificates (it changes at every start)."""
        context = ssl.create_default_context(cafile=str(self.cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.management_port}/roots/0", context=context,
                                    timeout=10) as resp:
            return resp.read().decode()

    def log_tail(self) -> str:
        return Path(self.process.log).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.process.stop()


def _wait_tcp(port: int, process: Subprocess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{Path(process.log).name} exited: {Path(process.log).read_text(errors='replace')[-1500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}: {Path(process.log).read_text(errors='replace')[-1500:]}")


class ServedApp:
    """A Flask app served over real HTTP on 127.0.0.1 (pebble fetches http-01 answers from it)."""

    def __init__(self, app, port: int | None = None):
        from werkzeug.serving import make_server

        self.port = port or free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


def wait_order(caller, order_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = caller.get(f"/v1/pki/acme/orders/{order_id}").get_json()
        if doc["status"] in ("valid", "invalid") or time.monotonic() > deadline:
            return doc
        time.sleep(0.25)


class Bind9:
    """A private named (bind9) on a free port: authoritative for `zone`, accepting TSIG-signed updates."""

    def __init__(self, workdir: Path, zone: str = "example.test"):
        import base64
        import secrets

        self.zone = zone
        self.port = free_tcp_udp_port()
        self.key_name = "scaivault-acme"
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{zone}.zone").write_text(
            f"$TTL 60\n@ IN SOA ns1.{zone}. admin.{zone}. 1 60 60 600 60\n@ IN NS ns1.{zone}.\n"
            f"ns1 IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n")
        (workdir / "named.conf").write_text(f"""
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    notify no;
}};
controls {{ }};
key "{self.key_name}" {{ algorithm hmac-sha256; secret "{self.secret}"; }};
zone "{zone}" {{ type primary; file "{workdir}/{zone}.zone"; allow-update {{ key "{self.key_name}"; }}; }};
""")
        os.chmod(workdir, 0o777)
        self.process = _start([need("named"), "-g", "-c", str(workdir / "named.conf"), "-n", "1"],
                               workdir / "named.log")
        _wait_tcp(self.port, self.process)

    def txt(self, name: str) -> set[str]:
        import dns.message
        import dns.query
        import dns.rdatatype

        answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), "127.0.0.1", port=self.port, timeout=3)
        return {b"".join(r.strings).decode() for rrset in answer.answer for r in rrset
                if rrset.rdtype == dns.rdatatype.TXT}

    def stop(self) -> None:
        self.process.stop()


def need_dns_plugin(name: str) -> None:
    """Skip unless the DNS provider plugin's entry point is installed (the worktree venv or `pip install -e .`)."""
    from scaivault.plugins import registrations

    if name not in registrations("scaivault_dns_providers"):
        pytest.skip(f"DNS provider plugin {name} not installed: pip install -e . (entry points)")
