"""The Redis connection (cache, rate limits, invalidation). Losing it costs a warm-up, not data.

In `scaivault dev` without REDIS_URL an in-process fakeredis server stands in, so a single
developer machine needs nothing installed; production always names a real Redis.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from urllib.parse import unquote, urlsplit

import redis

log = logging.getLogger("scaivault.redis")

from .config import Settings

SOCKET_TIMEOUT_SECONDS = 2.0


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """redis+sentinel://[:pass@]host:port[,host:port...]/<service>[/<db>] ->
    (sentinels, service name, db, password); ValueError naming what is wrong."""
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must list the sentinels as host:port[,host:port...]")
        hosts.append((host.strip("[]"), int(port)))
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ValueError("must name the Sentinel service: redis+sentinel://host:26379/<service>[/<db>]")
    if db and not db.isdigit():
        raise ValueError("must end in a database number such as /0 after the service name")
    password = unquote(parts.password) if parts.password else None
    return hosts, service, int(db or 0), password


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """redis+cluster://[[user]:pass@]host:port[,host:port...][/0] (the form flask-limiter's `limits`
    reads) -> (startup nodes, username, password); ValueError naming what is wrong."""
    parts = urlsplit(url)
    nodes = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must list the cluster nodes as host:port[,host:port...]")
        nodes.append((host.strip("[]"), int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0 (leave the path empty)")
    auth = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    user, _, password = auth.partition(":")
    return nodes, (unquote(user) or None), (unquote(password) or None)


class LazyRedisCluster:
    """A `redis.cluster.RedisCluster`, built on first use and rebuilt after a failed build.

    RedisCluster's constructor asks the nodes for the slot map at once and raises when none
    answers; built lazily, a cluster that is down at start costs what a down single Redis does
    (the calls that need it fail; the service keeps serving, readiness says `degraded`) instead of
    failing start-up. A failed build is retried at most once a second; meanwhile calls fail at
    once with ConnectionError. Attributes are the client's (commands, pipeline, register_script)."""

    RETRY_SECONDS = 1.0

    def __init__(self, nodes: list[tuple[str, int]], **options):
        self._nodes = nodes
        self._options = options
        self._client = None
        self._next_try = 0.0
        self._building = threading.Event()      # one builder at a time; no lock held across the network

    def client(self):
        client = self._client
        if client is not None:
            return client
        if time.monotonic() < self._next_try or self._building.is_set():
            raise redis.ConnectionError("Redis Cluster not reachable (retrying)")
        self._building.set()
        try:
            from redis.cluster import ClusterNode, RedisCluster

            client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self._nodes], **self._options)
        except Exception as exc:
            self._next_try = time.monotonic() + self.RETRY_SECONDS
            raise redis.ConnectionError(f"Redis Cluster not reachable: {type(exc).__name__}") from None
        finally:
            self._building.clear()
        self._client = client
        return client

    def get_encoder(self):
        # Script objects (register_script) need only the encoder: no connection for that
        from redis.connection import Encoder

        return Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)

    def register_script(self, script):
        from redis.commands.core import Script

        return Script(self, script)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __getattr__(self, name: str):
        return getattr(self.client(), name)


class HintList:
    """A bounded list of recent JSON members in one Redis sorted set (newest first, a day without use
    drops it): what a warming worker should load, never a decision (the loads come from the database).
    One key per operation, so one slot in a Redis Cluster; failures only lose a hint."""

    def __init__(self, key: str, size: int, ttl_seconds: int = 86400):
        self.key, self.size, self.ttl = key, size, ttl_seconds

    def note(self, client, member) -> None:
        try:
            pipe = client.pipeline(transaction=False)
            pipe.zadd(self.key, {json.dumps(member, separators=(",", ":")): time.time()})
            pipe.zremrangebyrank(self.key, 0, -self.size - 1)
            pipe.expire(self.key, self.ttl)
            pipe.execute()
        except Exception as exc:
            log.debug("warm-up hint not noted", extra={"key": self.key, "error": type(exc).__name__})

    def newest(self, client, limit: int) -> list:
        """The newest `limit` members, decoded; members that are not JSON are skipped (check the rest)."""
        try:
            members = client.zrevrange(self.key, 0, max(0, limit - 1))
        except Exception:
            return []
        out = []
        for raw in members:
            try:
                out.append(json.loads(raw))
            except (ValueError, TypeError):
                continue
        return out


def is_cluster(client) -> bool:
    return isinstance(client, LazyRedisCluster)


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for REDIS_URL with short timeouts, or an in-process server in dev mode.

    With redis+sentinel:// the client asks the sentinels for the current master on every
    (re)connect, so a Sentinel failover is followed without a restart. With redis+cluster:// it is
    a RedisCluster client (LazyRedisCluster: built on first use), following MOVED/ASK redirects."""
    if settings.redis_url and settings.redis_url.startswith("redis+cluster://"):
        nodes, username, password = parse_cluster_url(settings.redis_url)
        # keys of one multi-key operation share a hash tag ({...}), so every operation is on one slot
        return LazyRedisCluster(nodes, username=username, password=password,
                                socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                                require_full_coverage=False, health_check_interval=30)
    if settings.redis_url and settings.redis_url.startswith("redis+sentinel://"):
        from redis.sentinel import Sentinel

        hosts, service, db, password = parse_sentinel_url(settings.redis_url)
        # the password (if any) is the sentinels' and the master's, as the rate limiter's storage reads it
        sentinel = Sentinel(hosts, sentinel_kwargs={"password": password} if password else None,
                            socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS)
        return sentinel.master_for(service, db=db, password=password, socket_timeout=SOCKET_TIMEOUT_SECONDS,
                                   socket_connect_timeout=SOCKET_TIMEOUT_SECONDS, health_check_interval=30)
    if settings.redis_url:
        return redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            health_check_interval=30,
        )
    if not settings.dev_mode:
        raise RuntimeError("REDIS_URL is required outside dev mode")
    import fakeredis

    return fakeredis.FakeRedis(server=_dev_server())


_DEV_SERVER = None


def _dev_server():
    global _DEV_SERVER
    if _DEV_SERVER is None:
        import fakeredis

        _DEV_SERVER = fakeredis.FakeServer()
    return _DEV_SERVER
