"""The fault drills' equipment: real processes to break, a recording load, and the closing checks.

Everything here starts real servers on free ports in the test's own directories: a moto KMS
process (paused with SIGSTOP, the way a stalled KMS behaves: connections are accepted by the
kernel and never answered), a private PostgreSQL cluster (initdb/pg_ctl; never the shared
one), private redis-servers, and `scaivault serve` instances.
"""
from __future__ import annotations

import bisect
import collections
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pg8000.native
import requests

from tests.foundation_support import CLI, child_env, free_port, wait_for_port
from tests.fakes.servers import executable

PG_BIN = Path("/usr/lib/postgresql/15/bin")


# ----------------------------------------------------------------------------- KMS

class MotoProcess:
    """`moto_server` as its own process, so it can be paused (SIGSTOP) and resumed (SIGCONT)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoProcess":
        binary = executable("moto_server")
        assert binary, "moto_server is not installed (pip install 'moto[server]')"
        self.proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, self.proc, timeout=30)
        return self

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, service: str = "kms", region: str = "us-east-1"):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_key(self) -> str:
        return self.client().create_key(Description="scaivault drill root")["KeyMetadata"]["Arn"]

    def env(self, key_id: str, **extra: str) -> dict[str, str]:
        return {"KMS_PROVIDER": "aws", "KMS_KEY_ID": key_id, "KMS_ENDPOINT": self.url, "KMS_REGION": "us-east-1",
                "KMS_ACCESS_KEY_ID": "testing", "KMS_SECRET_ACCESS_KEY": "testing", **extra}


class BlackHole:
    """A TCP server that reads requests and never answers; counts the HTTP requests it received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        seen = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            seen += data
            while b"\r\n\r\n" in seen:
                self.requests += 1
                head, _, rest = seen.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                seen = rest[length:]

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for conn in self._conns:
            conn.close()


# ----------------------------------------------------------------------------- PostgreSQL

class PrivatePostgres:
    """A PostgreSQL cluster of this test alone (initdb + pg_ctl as user postgres, a free port).

    Restarting it touches nobody else; the shared cluster on 5432 is never restarted.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sv-drill-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"

    def _as_postgres(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in argv)]
        else:
            command = list(argv)
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)

    def start(self) -> "PrivatePostgres":
        if not self.data.exists():
            self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                              "-E", "UTF8", "--no-sync")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"), "-w",
                          "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
                                f"-c synchronous_commit=off -c full_page_writes=off", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> float:
        """Restart (fast mode: every connection is cut); returns the seconds it took."""
        started = time.monotonic()
        self.stop("fast")
        self.start()
        return time.monotonic() - started

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self, database: str = "postgres") -> pg8000.native.Connection:
        return pg8000.native.Connection(user="postgres", host="127.0.0.1", port=self.port, database=database)

    def create_database(self, name: str | None = None) -> str:
        name = name or "drill_" + secrets.token_hex(4)
        conn = self.admin()
        try:
            conn.run(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name

    def url(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def dump(self, database: str, path: Path) -> None:
        subprocess.run([str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-Fc", "-f", str(path), database], check=True, capture_output=True, timeout=120)

    def restore(self, path: Path, database: str) -> None:
        subprocess.run([str(PG_BIN / "pg_restore"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "--no-owner", "-d", database, str(path)], check=True, capture_output=True, timeout=120)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


# ----------------------------------------------------------------------------- Redis

class PrivateRedis:
    """A redis-server of this test alone; stop() and start() again on the same port."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid port and free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


class PrivateRedisCluster:
    """A 3-node Redis Cluster of this test alone (no replicas): redis-servers with
    --cluster-enabled yes on free ports, joined by `redis-cli --cluster create`."""

    def __init__(self, nodes: int = 3):
        self.dir = Path(tempfile.mkdtemp(prefix="sv-cluster-"))
        self.nodes = [PrivateRedis(port=_cluster_port(), extra=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                                          "--cluster-require-full-coverage", "yes", "--dir", "<dir>"))
                      for _ in range(nodes)]
        for node in self.nodes:
            node_dir = self.dir / str(node.port)
            node_dir.mkdir()
            node.extra = tuple(str(node_dir) if arg == "<dir>" else arg for arg in node.extra) + (
                "--cluster-config-file", str(node_dir / "nodes.conf"))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> "PrivateRedisCluster":
        try:
            for node in self.nodes:
                node.start()
            cli = shutil.which("redis-cli")
            assert cli, "redis-cli is not installed"
            subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
            self.wait_ok()
        except BaseException:
            self.stop()                 # no node outlives a failed start
            raise
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        import redis as redis_py

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(redis_py.Redis(port=n.port).cluster("info")["cluster_state"] == "ok" for n in self.nodes):
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError("the Redis Cluster did not reach cluster_state:ok")

    def node_of(self, key: str) -> PrivateRedis:
        """The node serving `key`'s slot."""
        import redis as redis_py

        slot = redis_py.Redis(port=self.nodes[0].port).cluster("keyslot", key)
        for start, end, master, *_ in redis_py.Redis(port=self.nodes[0].port).cluster("slots"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == master[1])
        raise AssertionError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- ScaiVault

class Instance:
    """`scaivault serve` with N workers; knows its master and worker pids; log kept in a file."""

    def __init__(self, env: dict[str, str], workers: int = 2, port: int | None = None):
        self.port = port or free_port()
        self.env = {**env, "BIND_ADDRESS": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers)}
        self.log_path = Path(tempfile.mkstemp(prefix="sv-drill-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 60) -> "Instance":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(CLI + ["serve"], env=child_env(self.env), stdout=subprocess.DEVNULL,
                                     stderr=log, start_new_session=True)
        log.close()
        wait_for_port(self.port, self.proc, timeout=timeout)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/v1/health/ready", timeout=3).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready within {timeout}s: {self.log()[-2000:]}")

    @property
    def master_pid(self) -> int:
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        import psutil

        try:
            return sorted(child.pid for child in psutil.Process(self.master_pid).children())
        except psutil.NoSuchProcess:
            return []

    def wait_workers(self, count: int, exclude: tuple[int, ...] = (), timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in self.worker_pids() if p not in exclude]
            if len(pids) >= count:
                return pids
            time.sleep(0.02)
        raise AssertionError(f"{count} new worker(s) did not appear within {timeout}s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 of the master (workers notice their parent is gone and exit)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def cleanup(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- load

@dataclass
class Outcome:
    kind: str            # write | read
    path: str
    started: float
    ended: float
    status: int | None   # None: connection error or timeout
    code: str | None = None
    version: int | None = None
    value: str | None = None


@dataclass
class LoadRecord:
    outcomes: list[Outcome] = field(default_factory=list)
    acked: dict[str, dict[int, str]] = field(default_factory=lambda: collections.defaultdict(dict))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)
            if outcome.kind == "write" and outcome.status in (200, 201) and outcome.version is not None:
                self.acked[outcome.path][outcome.version] = outcome.value


class Load:
    """Writers and readers against a base URL, each recording every outcome.

    Writers write a fresh value to their own paths and note each acknowledged (path, version,
    value); readers read those paths. Timeouts are bounded so a hung server shows as an error.
    """

    def __init__(self, base_url: str | list[str], token: str, *, writers: int = 4, readers: int = 2,
                 paths_per_writer: int = 3, timeout: float = 30.0, prefix: str | None = None, pace: float = 0.0):
        self.urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.token = token
        self.writers = writers
        self.readers = readers
        self.paths = [f"{prefix or 'drill-' + secrets.token_hex(3)}/w{w}/p{p}"
                      for w in range(writers) for p in range(paths_per_writer)]
        self.timeout = timeout
        self.pace = pace                      # seconds each thread sleeps between requests (a paced load)
        self.record = LoadRecord()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def start(self) -> "Load":
        for w in range(self.writers):
            mine = self.paths[w::self.writers]
            self._threads.append(threading.Thread(target=self._write_loop, args=(w, mine), daemon=True))
        for r in range(self.readers):
            self._threads.append(threading.Thread(target=self._read_loop, args=(r,), daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadRecord:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.record

    def _call(self, session, method, url, **kw):
        try:
            return session.request(method, url, timeout=self.timeout, **kw)
        except requests.RequestException:
            session.close()
            return None

    def _write_loop(self, index: int, paths: list[str]) -> None:
        session = self._session()
        n = 0
        while not self._stop.is_set():
            path = paths[n % len(paths)]
            url = self.urls[n % len(self.urls)]
            value = secrets.token_hex(8)
            started = time.monotonic()
            response = self._call(session, "PUT", f"{url}/v1/secrets/{path}", json={"data": {"v": value}, "options": {"max_versions": 1000}})
            outcome = Outcome("write", path, started, time.monotonic(), response.status_code if response is not None else None)
            if response is not None:
                body = _json(response)
                if response.status_code in (200, 201):
                    outcome.version = body.get("version")
                    outcome.value = value
                else:
                    outcome.code = (body.get("error") or {}).get("code")
            self.record.add(outcome)
            n += 1
            if self.pace:
                time.sleep(self.pace)

    def _read_loop(self, index: int) -> None:
        session = self._session()
        n = index
        while not self._stop.is_set():
            written = list(self.record.acked)          # only paths that hold an acknowledged write
            if not written:
                time.sleep(0.01)
                continue
            path = written[n % len(written)]
            url = self.urls[n % len(self.urls)]
            started = time.monotonic()
            response = self._call(session, "GET", f"{url}/v1/secrets/{path}")
            outcome = Outcome("read", path, started, time.monotonic(), response.status_code if response is not None else None)
            if response is not None:
                body = _json(response)
                if response.status_code == 200:
                    outcome.version = body.get("version")
                    outcome.value = (body.get("data") or {}).get("v")
                else:
                    outcome.code = (body.get("error") or {}).get("code")
            self.record.add(outcome)
            n += 1
            time.sleep(self.pace or 0.005)


def _json(response) -> dict:
    try:
        body = response.json()
        return body if isinstance(body, dict) else {}
    except ValueError:
        return {}


# ----------------------------------------------------------------------------- checks

@dataclass
class DrillReport:
    requests: int
    acked_writes: int
    errors: dict[str, int]
    recovery_seconds: float | None
    longest_wait: float

    def line(self) -> str:
        return (f"requests={self.requests} acked_writes={self.acked_writes} errors={dict(self.errors)} "
                f"recovery_s={self.recovery_seconds if self.recovery_seconds is None else round(self.recovery_seconds, 2)} "
                f"longest_wait_s={round(self.longest_wait, 2)}")


def check_drill(base_url: str, token: str, record: LoadRecord, *, allowed_errors: set[str],
                fault_ended: float | None, database_url: str | None = None,
                tenant_id: str | None = None) -> DrillReport:
    """The closing checks of every drill; AssertionError naming the first violation.

    - every acknowledged write is readable at its version with its value;
    - no read returned a version older than one acknowledged before the read began
      (and every value read is the value written at that version);
    - errors only with the expected codes (a connection error counts as "connection");
    - the audit hash chain of the tenant verifies (when database_url is given);
    - recovery time: from the end of the fault to the first success after it.
    """
    checks = [(path, version, value) for path, versions in record.acked.items()
              for version, value in versions.items()
              if max(versions) - version < 1000]      # older ones pruned by max_versions: aged out, not lost
    local = threading.local()

    def read_back(item: tuple[str, int, str]) -> None:
        path, version, value = item
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {token}"
        response = local.session.get(f"{base_url}/v1/secrets/{path}", params={"version": version}, timeout=30)
        assert response.status_code == 200, (path, version, response.status_code, response.text[:300])
        assert response.json()["data"]["v"] == value, (path, version, "acknowledged write lost or changed")

    # a long load acknowledges 10^5 writes: read them back with a few clients (list() re-raises the first failure)
    with ThreadPoolExecutor(max_workers=4 if len(checks) > 2000 else 1) as pool:
        list(pool.map(read_back, checks))
    # per path: acknowledgement times (sorted) and the highest version acknowledged by each time
    acked_by_path: dict[str, tuple[list[float], list[int]]] = {}
    for w in sorted((o for o in record.outcomes if o.kind == "write" and o.version is not None), key=lambda o: o.ended):
        ends, highest = acked_by_path.setdefault(w.path, ([], []))
        ends.append(w.ended)
        highest.append(max(w.version, highest[-1]) if highest else w.version)
    for read in (o for o in record.outcomes if o.kind == "read" and o.status == 200):
        ends, highest = acked_by_path.get(read.path, ([], []))
        i = bisect.bisect_left(ends, read.started)          # writes with ended < read.started
        if i:
            assert read.version >= highest[i - 1], ("stale read", read.path, read.version, highest[i - 1])
        written = record.acked.get(read.path, {}).get(read.version)
        if written is not None:
            assert read.value == written, ("read returned a value not written at its version", read.path, read.version)
    errors: collections.Counter = collections.Counter()
    for outcome in record.outcomes:
        if outcome.status is None:
            errors["connection"] += 1
        elif outcome.status >= 400:
            errors[outcome.code or f"http_{outcome.status}"] += 1
    unexpected = {code: n for code, n in errors.items() if code not in allowed_errors}
    assert not unexpected, f"unexpected errors {unexpected} (allowed {sorted(allowed_errors)})"
    assert not any(o.status == 500 for o in record.outcomes), "a request answered 500"
    if database_url is not None:
        from scaivault.audit.chain import verify_chain
        from scaivault.config import DatabaseURL
        from scaivault.db import Database

        db = Database(DatabaseURL.parse("DATABASE_URL", database_url), pool_size=1)
        try:
            report = verify_chain(db, tenant_id)
        finally:
            db.close()
        assert report.valid and report.checked > 0, report.as_dict()
    recovery = None
    if fault_ended is not None:
        after = [o.ended for o in record.outcomes if o.started >= fault_ended and o.status in (200, 201)]
        recovery = (min(after) - fault_ended) if after else None
        assert recovery is not None, "no request succeeded after the fault ended"
    longest = max((o.ended - o.started for o in record.outcomes), default=0.0)
    return DrillReport(len(record.outcomes), sum(len(v) for v in record.acked.values()), dict(errors),
                       recovery, longest)
