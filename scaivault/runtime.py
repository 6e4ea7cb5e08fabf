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
    def authenticator(self):
        from .auth.authenticator import Authenticator

        return Authenticator(self)

    @cached_property
    def plugins(self):
        from .plugins import get_plugin_manager

        return get_plugin_manager()

    @cached_property
    def cursor_key(self):
        """The cursor-signing key source (scaivault.pagination), derived from sealed material on first use."""
        from .pagination import key_from_keyring

        return key_from_keyring(lambda: self.keyring)

    @cached_property
    def keyring(self):
        """The key hierarchy (scaivault.crypto.Keyring) over the KMS_PROVIDER plugin."""
        from .crypto import build_keyring

        return build_keyring(self.settings, self.db)

    @cached_property
    def storage(self):
        """The object storage backend (STORAGE_PROVIDER plugin); stores only sealed bytes."""
        from .storage import build_storage

        return build_storage(self.settings, self)

    @cached_property
    def policy_cache(self):
        """Compiled policies per identity, invalidated across instances (scaivault.policy.cache)."""
        from .policy.cache import PolicyCache
        from .services.policies import PolicyService

        return PolicyCache(self.redis, PolicyService(self.db).load_bound)

    @cached_property
    def access(self):
        """Scope-and-policy authorisation of secret operations (scaivault.policy.access)."""
        from .policy.access import AccessControl

        return AccessControl(self.policy_cache)

    @cached_property
    def secret_store(self):
        from .services.secrets import SecretStore

        return SecretStore(self.db, self.keyring, self.settings)

    @cached_property
    def federation(self):
        """Federation backends: configuration, read routing and sync (scaivault.federation)."""
        from .federation.service import FederationService

        return FederationService(self)

    @cached_property
    def pki(self):
        """Internal CAs, roles, issuance, inventory and CRLs (scaivault.services.pki)."""
        from .services.pki import PkiService

        return PkiService(self.db, self.keyring, self.settings, self.secret_store)

    @cached_property
    def dns_providers(self):
        """Tenants' DNS providers for dns-01 over the `scaivault_dns_providers` plugins."""
        from .plugins import registrations
        from .services.dns_providers import DnsProviderStore

        return DnsProviderStore(self.db, self.keyring, lambda: registrations("scaivault_dns_providers", self.plugins))

    @cached_property
    def acme(self):
        """The ACME client: accounts, orders and their background runners (scaivault.services.acme)."""
        from .services.acme import AcmeService

        return AcmeService(self.db, self.keyring, self.settings, self.secret_store, self.dns_providers)

    @cached_property
    def dynamic(self):
        """Dynamic database credentials: engines, roles, leases, the sweeper (scaivault.services.dynamic)."""
        from .services.dynamic import DynamicService

        return DynamicService(self)

    @cached_property
    def token_exchange(self):
        """Foreign workload tokens -> short-lived svx_ tokens (scaivault.auth.exchange)."""
        from .auth.exchange import TokenExchange

        return TokenExchange(self)

    @cached_property
    def trust_rules(self):
        from .services.trust_rules import TrustRuleService

        return TrustRuleService(self)

    def close(self) -> None:
        if "event_pump" in self.__dict__:       # its threads use the pool: stop them first
            self.__dict__["event_pump"].stop()
        if "keyring" in self.__dict__:
            self.keyring.close()
        if "storage" in self.__dict__:
            self.storage.close()
        if "db" in self.__dict__:
            self.db.close()
        if "redis" in self.__dict__:
            from .redis_store import is_cluster

            if is_cluster(self.redis):             # its node pools and slot map (a plain client's pool is shared)
                self.redis.close()
