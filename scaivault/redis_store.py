"""The Redis connection (cache, rate limits, invalidation). Losing it costs a warm-up, not data.

In `scaivault dev` without REDIS_URL an in-process fakeredis server stands in, so a single
developer machine needs nothing installed; production always names a real Redis.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis

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


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for REDIS_URL with short timeouts, or an in-process server in dev mode.

    With redis+sentinel:// the client asks the sentinels for the current master on every
    (re)connect, so a Sentinel failover is followed without a restart."""
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
