"""REDIS_URL=redis+sentinel://...: the service finds its Redis master through a local Sentinel,
shares rate limits through it, and follows a failover to the replica Sentinel promotes."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis as redis_py

from scaivault.config import ConfigError, load_settings
from tests.drills.harness import PrivateRedis
from tests.foundation_support import free_port, wait_for_port
from tests.secrets_support import Callers


class Sentinel:
    def __init__(self, master_port: int, service: str = "svmaster"):
        self.port = free_port()
        self.service = service
        self.dir = Path(tempfile.mkdtemp(prefix="sv-sentinel-"))
        (self.dir / "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {service} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n")
        self.proc = None

    def start(self) -> "Sentinel":
        self.proc = subprocess.Popen([shutil.which("redis-server"), str(self.dir / "sentinel.conf"), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_a_sentinel_url_must_name_its_service(base_env):
    with pytest.raises(ConfigError) as info:
        load_settings({**base_env, "REDIS_URL": "redis+sentinel://127.0.0.1:26379"})
    assert info.value.variable == "REDIS_URL" and "service" in info.value.problem


@pytest.mark.slow
def test_the_service_uses_redis_through_sentinel_and_follows_a_failover(make_app, scaikey):
    master = PrivateRedis().start()
    replica = PrivateRedis(extra=("--replicaof", "127.0.0.1", "0")).start()
    redis_py.Redis(port=replica.port).replicaof("127.0.0.1", master.port)
    sentinel = Sentinel(master.port).start()
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{sentinel.service}/3"
        app = make_app(REDIS_URL=url)
        client = app.test_client()
        ready = client.get("/v1/health/ready").get_json()
        assert ready["checks"]["redis"] == "ok", ready
        caller = Callers(scaikey, client).admin("tnt_sentinel")
        assert caller.put("/v1/secrets/s", json={"data": {"v": 1}}).status_code == 201
        # the rate-limit buckets live in database 3 of the master Sentinel names
        assert redis_py.Redis(port=master.port, db=3).keys("scaivault:rl:*")
        assert app.extensions["scaivault_rate_limits"].status()["status"] == "ok"
        master.stop()                                 # Sentinel promotes the replica
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if redis_py.Redis(port=replica.port).info("replication")["role"] == "master":
                break
            time.sleep(0.2)
        assert redis_py.Redis(port=replica.port).info("replication")["role"] == "master"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.get("/v1/health/ready").get_json()["checks"]["redis"] != "ok":
            time.sleep(0.2)
        assert client.get("/v1/health/ready").get_json()["checks"]["redis"] == "ok"
        assert caller.get("/v1/secrets/s").status_code == 200
    finally:
        sentinel.stop()
        replica.stop()
        master.stop()
