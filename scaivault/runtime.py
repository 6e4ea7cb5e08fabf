"""The long-lived collaborators of one ScaiVault process, built once from Settings.

create_app() attaches a Runtime to the Flask app; the CLI builds one for jobs. Services
receive what they need from it; nothing here imports Flask.
"""
from __future__ import annotations

import time
from functools import cached_property

from .config import Settings
from .db import Database


class Runtime:
    """Settings plus the database, Redis and plugin handles derived from them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.started_at = time.time()

    @cached_property
    def db(self) -> Database:
        assert self.settings.database_url is not None, "DATABASE_URL is required"
        return Database(self.settings.database_url, self.settings.database_url_read, self.settings.db_pool_size)

    @cached_property
    def redis(self):
        from .redis_store import connect_redis

        return connect_redis(self.settings)

    @cached_property
    def plugins(self):
        from .plugins import get_plugin_manager

        return get_plugin_manager()

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
