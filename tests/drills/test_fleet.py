"""Three `scaivault serve` instances behind nginx (Debian package), sharing PostgreSQL and Redis;
one instance is killed (-9, master and workers) under load. nginx passes new requests to the
others; only requests in flight on the killed instance fail (502 from nginx, or the connection).
nginx never retries a PUT that reached an instance (non-idempotent), so no write is applied twice."""
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

from tests.drills.harness import Instance, Load, check_drill
from tests.foundation_support import free_port, wait_for_port

TENANT = "tnt_fleet"


class Nginx:
    """nginx in the foreground with a private config, pid file and temp paths."""

    def __init__(self, upstreams: list[int]):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sv-nginx-"))
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
        (self.dir / "nginx.conf").write_text(f"""
user root;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    upstream scaivault {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://scaivault;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
""")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Nginx":
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert os.path.exists(binary), "nginx is not installed (apt-get install nginx-light)"
        self.proc = subprocess.Popen([binary, "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.slow
def test_three_instances_behind_nginx_one_killed_under_load(base_env, scaikey):
    env = {**base_env, "TRUSTED_PROXIES": "127.0.0.1"}
    instances = [Instance(env, workers=1) for _ in range(3)]
    proxy = None
    try:
        for instance in instances:
            instance.start(wait_ready=False)
        for instance in instances:
            instance.wait_ready()
        proxy = Nginx([i.port for i in instances]).start()
        token = scaikey.mint(sub="usr_fleet", email="fleet@fleet.example", tenant_id=TENANT, partner_id="ptn_fleet",
                             scopes=("secrets:read", "secrets:write"), role="tenant_admin")
        load = Load(proxy.url, token, writers=3, readers=3).start()
        time.sleep(2.0)
        victim = instances[1]
        os.killpg(victim.master_pid, signal.SIGKILL)         # master and workers at once
        killed = time.monotonic()
        time.sleep(4.0)
        record = load.stop()
        # in flight on the victim: nginx answers 502 (HTML, no envelope) or the connection drops
        result = check_drill(proxy.url, token, record, allowed_errors={"http_502", "connection"}, fault_ended=killed,
                             database_url=env["DATABASE_URL"], tenant_id=TENANT)
        after = [o for o in record.outcomes if o.started > killed + 1.0]
        assert after and all(o.status in (200, 201) for o in after), "nginx kept sending to the dead instance"
        print(f"\nFLEET {result.line()}")
    finally:
        if proxy is not None:
            proxy.stop()
        for instance in instances:
            instance.cleanup()
