"""The Redis connection (cache, rate limits, invalidation). Losing it costs a warm-up, not data.

In `scaivault dev` without REDIS_URL an in-process fakeredis server stands in, so a single
developer machine needs nothing installed; production always names a real Redis.
"""
from __future__ import annotations

import redis

from .config import Settings

SOCKET_TIMEOUT_SECONDS = 2.0


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for REDIS_URL with short timeouts, or an in-process server in dev mode."""
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
