"""The Keyring: KMS root -> partner key -> tenant key -> per-value data key.

Hot path (`open` of a value whose tenant key is cached): no KMS call, no database query.
Partner and tenant keys are unwrapped on first use, cached in process memory for
KMS_CACHE_TTL, and created on first use (insert-or-read, so concurrent instances agree).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..pagination import timestamp
from ..config import ConfigError, Settings
from ..db import Database
from ..errors import ScaiVaultError
from . import envelope
from .context import PARTNER_SCOPE, ROOT_CHECK_AAD, SealContext, partner_key_aad, tenant_key_aad
from .breaker import CircuitBreaker, SingleFlight
from .errors import KmsError, KmsUnavailable, KmsWrongKey, SealError
from .keycache import KeyCache
from .kms import KmsProvider, call_limits, timed

log = logging.getLogger("scaivault.crypto")

HEALTH_CACHE_SECONDS = 5.0
HEALTH_WAIT_SECONDS = 1.5       # readiness waits this long for a KMS probe, then answers from what it knows


def commitment(key: bytes, aad: bytes) -> bytes:
    """HMAC-SHA256 of the binding data under the key: proves a key belongs where it is stored."""
    return hmac.new(key, b"scaivault/commitment\x00" + aad, hashlib.sha256).digest()


@dataclass(frozen=True)
class RootRecord:
    version: int
    provider: str
    key_ref: str
    secondary_key_ref: str | None
    wrapped_check: bytes
    wrapped_check_secondary: bytes | None
    check_commitment: bytes
    status: str
    created_at: Any = None
    activated_at: Any = None

    @classmethod
    def from_row(cls, row: dict) -> "RootRecord":
        return cls(row["version"], row["provider"], row["key_ref"], row["secondary_key_ref"],
                   bytes(row["wrapped_check"]),
                   bytes(row["wrapped_check_secondary"]) if row["wrapped_check_secondary"] is not None else None,
                   bytes(row["check_commitment"]), row["status"], row.get("created_at"), row.get("activated_at"))


_ROOT_COLUMNS = ("version, provider, key_ref, secondary_key_ref, wrapped_check, wrapped_check_secondary, "
                 "check_commitment, status, created_at, activated_at")


class Keyring:
    """Seals and opens values under the key hierarchy of one ScaiVault deployment."""

    def __init__(self, settings: Settings, db: Database, provider_factory: Callable[[Settings, str | None], KmsProvider],
                 *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.db = db
        self.provider_factory = provider_factory
        self.cache = KeyCache(settings.kms_cache_ttl, clock=clock, grace_seconds=settings.kms_cache_grace)
        self._providers: dict[str, KmsProvider] = {}
        self._primary: KmsProvider | None = None
        self._secondary: KmsProvider | None = None
        self._lock = threading.RLock()
        self._root: RootRecord | None = None
        self._root_loaded_at = 0.0
        self._root_reloading = False
        self._degraded_since: float | None = None
        self._health: tuple[float, dict] | None = None
        self._health_probe: threading.Thread | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._flights = SingleFlight()
        try:
            timeout, attempts = call_limits(settings)
        except ConfigError:
            timeout, attempts = 10.0, 2
        # a follower waits for the leader's call: at most every attempt of the primary and the
        # secondary, plus the database statements around them
        self.call_bound = 2 * timeout * attempts + 5.0

    # ------------------------------------------------------------------ providers

    @property
    def primary(self) -> KmsProvider:
        """The configured KMS key (KMS_PROVIDER with its key variable)."""
        if self._primary is None:
            with self._lock:
                if self._primary is None:
                    provider = self.provider_factory(self.settings, None)
                    self._providers[provider.key_ref] = provider
                    self._primary = provider
        return self._primary

    @property
    def secondary(self) -> KmsProvider | None:
        """The failover key (KMS_KEY_ID_SECONDARY), same provider, when configured."""
        ref = self.settings.kms_key_id_secondary
        if not ref:
            return None
        if self._secondary is None:
            self._secondary = self.provider_for(ref)
        return self._secondary

    def provider_for(self, key_ref: str) -> KmsProvider:
        """A provider bound to `key_ref` (a key named by a stored record, maybe not the current one)."""
        provider = self._providers.get(key_ref)
        if provider is None:
            if self._configured_ref() == key_ref:
                return self.primary
            with self._lock:
                provider = self._providers.get(key_ref)
                if provider is None:
                    provider = self.provider_factory(self.settings, key_ref)
                    self._providers[key_ref] = provider
        return provider

    # ------------------------------------------------------------------ failing fast

    def breaker(self, key_ref: str) -> CircuitBreaker:
        """The circuit breaker of one KMS key (created on first use)."""
        breaker = self._breakers.get(key_ref)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(key_ref)
                if breaker is None:
                    breaker = self._breakers[key_ref] = CircuitBreaker(key_ref, lambda: self._probe_key(key_ref))
        return breaker

    def _kms(self, provider: KmsProvider, operation: str, fn: Callable[[], bytes]) -> bytes:
        """One KMS call through the key's breaker, timed (fails at once while the key is known down)."""
        return self.breaker(provider.key_ref).call(lambda: timed(operation, fn))

    def _probe_key(self, key_ref: str) -> None:
        """The breaker's background probe: open the root check value with this key, directly."""
        root = self._root or self._load_root()
        if root is None:
            raise KmsUnavailable("no encryption root to probe with")
        wrapped = root.wrapped_check if key_ref == root.key_ref else \
            root.wrapped_check_secondary if key_ref == root.secondary_key_ref else None
        if wrapped is None:
            raise KmsUnavailable("this key wraps no check value of the active root")
        provider = self.provider_for(key_ref)
        timed("decrypt", lambda: provider.unwrap(wrapped, ROOT_CHECK_AAD))

    # ------------------------------------------------------------------ root record

    def _load_root(self, status: str = "active") -> RootRecord | None:
        row = self.db.one(f"SELECT {_ROOT_COLUMNS} FROM kms_roots WHERE status = :s", s=status)
        return RootRecord.from_row(row) if row else None

    def root_by_version(self, version: int) -> RootRecord:
        if self._root is not None and self._root.version == version:
            return self._root
        row = self.db.one(f"SELECT {_ROOT_COLUMNS} FROM kms_roots WHERE version = :v", v=version)
        if row is None:
            raise SealError(f"no root record version {version}")
        return RootRecord.from_row(row)

    def new_root_record(self, version: int, status: str) -> RootRecord:
        """A root record for the configured key(s): a random check value wrapped by each."""
        check = envelope.new_key()
        primary = self.primary
        wrapped = timed("encrypt", lambda: primary.wrap(check, ROOT_CHECK_AAD))
        secondary = self.secondary
        wrapped_2 = timed("encrypt", lambda: secondary.wrap(check, ROOT_CHECK_AAD)) if secondary else None
        return RootRecord(version, primary.name, primary.key_ref, secondary.key_ref if secondary else None,
                          wrapped, wrapped_2, commitment(check, ROOT_CHECK_AAD), status)

    def insert_root(self, session, record: RootRecord) -> bool:
        """Insert unless that version exists (another instance won the race); True if inserted."""
        return session.execute(
            "INSERT INTO kms_roots (version, provider, key_ref, secondary_key_ref, wrapped_check, "
            "wrapped_check_secondary, check_commitment, status, activated_at) VALUES (:v, :p, :k, :k2, :w, :w2, :c, :s, "
            "CASE WHEN :s = 'active' THEN now() END) ON CONFLICT DO NOTHING",
            v=record.version, p=record.provider, k=record.key_ref, k2=record.secondary_key_ref, w=record.wrapped_check,
            w2=record.wrapped_check_secondary, c=record.check_commitment, s=record.status) == 1

    def ensure_root(self, *, startup: bool = True) -> RootRecord:
        """Create the encryption root on first boot, then prove the configured KMS can open it.

        Raises ConfigError (the CLI exits 2) when the stored root cannot be opened: a wrong
        key must stop start-up, not surface on the first secret read. Past start-up
        (`startup=False`: a worker loading it for a request) an unreachable KMS is
        KmsUnavailable (503 kms_unavailable) and a refusal KmsWrongKey, never a configuration error.
        """
        root = self._load_root()
        if root is None:
            try:
                record = self.new_root_record(1, "active")
            except KmsError as exc:
                raise ConfigError(_key_variable(self.settings),
                                  f"cannot create the encryption root with the {self.settings.kms_provider} key "
                                  f"{self._configured_ref() or '(unreachable)'}: {exc.message}") from None
            with self.db.session() as s:
                if self.insert_root(s, record):
                    log.info("created the encryption root", extra={"kms_provider": record.provider, "key_ref": record.key_ref})
            root = self._load_root()
            assert root is not None
        self.verify_root(root, startup=startup)
        self._root = root
        self._root_loaded_at = self.cache.clock()
        return root

    def verify_root(self, root: RootRecord, *, startup: bool = True) -> None:
        """Open the root check value with the key that wrapped it (ConfigError when impossible)."""
        problems = []
        unreachable = 0
        for key_ref, wrapped in ((root.key_ref, root.wrapped_check), (root.secondary_key_ref, root.wrapped_check_secondary)):
            if not key_ref or wrapped is None:
                continue
            try:
                provider = self.provider_for(key_ref)
                check = self._kms(provider, "decrypt", lambda: provider.unwrap(wrapped, ROOT_CHECK_AAD))
                if not hmac.compare_digest(commitment(check, ROOT_CHECK_AAD), root.check_commitment):
                    raise SealError("the check value does not match")
            except (KmsError, SealError) as exc:
                problems.append(f"key {key_ref}: {exc.message}")
                unreachable += isinstance(exc, KmsUnavailable)
                continue
            if key_ref != root.key_ref:
                log.warning("the primary KMS key cannot open the encryption root; running on the secondary key",
                            extra={"key_ref": root.key_ref})
                self._degraded_since = time.monotonic()
            if self._configured_ref() != root.key_ref:
                log.warning("KMS key differs from the one wrapping the partner keys; run `scaivault keys rotate` "
                            "to re-wrap them under it", extra={"configured": self._configured_ref(), "active": root.key_ref})
            if self._configured_secondary_ref() != root.secondary_key_ref:
                log.warning("KMS_KEY_ID_SECONDARY differs from the secondary key the partner keys are wrapped "
                            "under; run `scaivault keys rotate` to wrap them under it",
                            extra={"configured": self.settings.kms_key_id_secondary, "active": root.secondary_key_ref})
            return
        if not startup:
            if unreachable == len(problems):
                raise KmsUnavailable("the KMS cannot be reached to open the encryption root")
            raise KmsWrongKey("the configured KMS key cannot open the stored encryption root")
        raise ConfigError(_key_variable(self.settings),
                          f"the configured KMS key cannot open the stored encryption root (root version "
                          f"{root.version}, {root.provider} key {root.key_ref}): {'; '.join(problems)}. "
                          f"Refusing to start with a wrong or unreachable key.")

    def _configured_secondary_ref(self) -> str | None:
        try:
            return self.secondary.key_ref if self.secondary else None
        except (KmsError, ConfigError):
            return self.settings.kms_key_id_secondary

    def _configured_ref(self) -> str | None:
        try:
            return self.primary.key_ref
        except (KmsError, ConfigError):
            return None

    @property
    def root(self) -> RootRecord:
        """The active root record, re-read every KMS_CACHE_TTL so a rotation done by another
        instance is picked up (new partner keys are then wrapped under the new key)."""
        if self._root is None:
            # first load (a fresh worker): single-flight, not a lock, so that while the KMS stalls
            # the requests arriving meanwhile share the one load's outcome instead of queueing
            self._flights.do("root", self._load_first_root, self.call_bound)
        elif self.cache.clock() - self._root_loaded_at > self.cache.ttl:
            self._reload_root()
        assert self._root is not None
        return self._root

    def _reload_root(self) -> None:
        """One caller re-reads the root; the others keep using the current one meanwhile, so no lock
        is held across the database or KMS call (design.md invariant 12)."""
        with self._lock:
            if self._root_reloading:
                return
            self._root_reloading = True
        try:
            current = self._load_root()
            if current is not None and self._root is not None and current.version == self._root.version:
                self._root_loaded_at = self.cache.clock()
            else:
                self.ensure_root(startup=False)
        finally:
            with self._lock:
                self._root_reloading = False

    def _load_first_root(self) -> None:
        if self._root is None:
            self.ensure_root(startup=False)

    # ------------------------------------------------------------------ partner keys

    def _unwrap_with_failover(self, root: RootRecord, wrapped: bytes, wrapped_secondary: bytes | None, aad: bytes) -> bytes:
        try:
            provider = self.provider_for(root.key_ref)
            key = self._kms(provider, "decrypt", lambda: provider.unwrap(wrapped, aad))
            self._degraded_since = None
            return key
        except KmsError as exc:
            if not (root.secondary_key_ref and wrapped_secondary is not None):
                raise
            if self._degraded_since is None:
                log.warning("primary KMS key failed; unwrapping with the secondary key",
                            extra={"key_ref": root.key_ref, "error": exc.code})
            secondary = self.provider_for(root.secondary_key_ref)
            key = self._kms(secondary, "decrypt", lambda: secondary.unwrap(wrapped_secondary, aad))
            if self._degraded_since is None:
                self._degraded_since = time.monotonic()
            return key

    def partner_aead(self, partner_id: str) -> AESGCM:
        """The partner master key as an AES-GCM cipher (cached; created on first use)."""
        cached = self.cache.get(("partner", partner_id))
        if cached is not None:
            return cached
        # one unwrap per partner at a time (single-flight): when the cached key expires under
        # load, the concurrent requests share one KMS call and are released together
        try:
            return self._flights.do(("partner", partner_id), lambda: self._load_partner_if_missing(partner_id),
                                    self.call_bound)
        except KmsUnavailable:
            # the KMS cannot be reached (not: refused): keep serving the last unwrapped key
            # for up to KMS_CACHE_GRACE past its TTL, as a running Vault keeps its keyring
            stale = self.cache.get_stale(("partner", partner_id))
            if stale is None:
                raise
            _count_stale()
            return stale

    def _load_partner_if_missing(self, partner_id: str) -> AESGCM:
        cached = self.cache.get(("partner", partner_id))
        return cached if cached is not None else self._load_partner_key(partner_id)

    def _load_partner_key(self, partner_id: str) -> AESGCM:
        root = self.root
        row = self.db.one("SELECT root_version, wrapped, wrapped_secondary, commitment FROM partner_keys "
                          "WHERE partner_id = :p", p=partner_id)
        aad = partner_key_aad(partner_id)
        if row is None:
            # wrapped under the keys the active root names, so a rotation in progress sweeps it up too
            key = envelope.new_key()
            primary = self.provider_for(root.key_ref)
            secondary = self.provider_for(root.secondary_key_ref) if root.secondary_key_ref else None
            wrapped = self._kms(primary, "encrypt", lambda: primary.wrap(key, aad))
            wrapped_2 = self._kms(secondary, "encrypt", lambda: secondary.wrap(key, aad)) if secondary else None
            self.db.execute("INSERT INTO partner_keys (partner_id, root_version, wrapped, wrapped_secondary, commitment) "
                            "VALUES (:p, :v, :w, :w2, :c) ON CONFLICT DO NOTHING",
                            p=partner_id, v=root.version, w=wrapped, w2=wrapped_2, c=commitment(key, aad))
            row = self.db.one("SELECT root_version, wrapped, wrapped_secondary, commitment FROM partner_keys "
                              "WHERE partner_id = :p", p=partner_id)
            assert row is not None
        record = self.root_by_version(row["root_version"])
        key = self._unwrap_with_failover(record, bytes(row["wrapped"]),
                                         bytes(row["wrapped_secondary"]) if row["wrapped_secondary"] is not None else None, aad)
        if not hmac.compare_digest(commitment(key, aad), bytes(row["commitment"])):
            raise SealError("the partner key record does not belong to this partner")
        aead = AESGCM(key)
        self.cache.put(("partner", partner_id), aead)
        return aead

    # ------------------------------------------------------------------ tenant keys

    def _unwrap_tenant_key(self, partner_id: str, scope: str, version: int, wrapped: bytes) -> AESGCM:
        key = envelope.gcm_decrypt(self.partner_aead(partner_id), wrapped, tenant_key_aad(partner_id, scope, version))
        aead = AESGCM(key)
        self.cache.put(("tenant", partner_id, scope, version), aead)
        return aead

    def active_tenant_key(self, partner_id: str, scope: str) -> tuple[int, AESGCM]:
        """(version, cipher) of the tenant key new values are sealed under; created on first use."""
        cached = self.cache.get(("active", partner_id, scope))
        if cached is not None:
            return cached
        sql = "SELECT version, wrapped FROM tenant_keys WHERE partner_id = :p AND tenant_id = :t AND status = 'active'"
        row = self.db.one(sql, p=partner_id, t=scope)
        if row is None:
            partner = self.partner_aead(partner_id)
            key = envelope.new_key()
            wrapped = envelope.gcm_encrypt(partner, key, tenant_key_aad(partner_id, scope, 1))
            self.db.execute("INSERT INTO tenant_keys (partner_id, tenant_id, version, wrapped, status) "
                            "VALUES (:p, :t, 1, :w, 'active') ON CONFLICT DO NOTHING", p=partner_id, t=scope, w=wrapped)
            row = self.db.one(sql, p=partner_id, t=scope)
            if row is None:
                raise SealError("no active tenant key (a rotation is in progress); retry")
        aead = self.cache.get(("tenant", partner_id, scope, row["version"])) or \
            self._unwrap_tenant_key(partner_id, scope, row["version"], bytes(row["wrapped"]))
        result = (row["version"], aead)
        self.cache.put(("active", partner_id, scope), result)
        return result

    def tenant_key(self, partner_id: str, scope: str, version: int) -> AESGCM:
        """The tenant key of one version (cached), for opening values sealed under it."""
        cached = self.cache.get(("tenant", partner_id, scope, version))
        if cached is not None:
            return cached
        row = self.db.one("SELECT wrapped FROM tenant_keys WHERE partner_id = :p AND tenant_id = :t AND version = :v",
                          p=partner_id, t=scope, v=version)
        if row is None:
            raise SealError("the sealed value names a tenant key that does not exist for this tenant")
        return self._unwrap_tenant_key(partner_id, scope, version, bytes(row["wrapped"]))

    # ------------------------------------------------------------------ sealing

    def seal(self, ctx: SealContext, plaintext: bytes) -> bytes:
        """Encrypt `plaintext` under a fresh data key, bound to `ctx`."""
        if not isinstance(plaintext, (bytes, bytearray, memoryview)):
            raise TypeError("seal() takes bytes")
        if not ctx.partner_id:
            # invariant 11: the owner bound into a ciphertext must be authoritative before the first seal
            raise tenant_partner_unknown(ctx.tenant_id)
        version, aead = self.active_tenant_key(ctx.partner_id, ctx.key_scope)
        return envelope.seal_with(aead, version, ctx, plaintext)

    def open(self, ctx: SealContext, sealed: bytes) -> bytes:
        """Decrypt a value sealed for exactly `ctx`; SealError when it was sealed for anything else."""
        version = envelope.tenant_key_version_of(sealed)
        aead = self.tenant_key(ctx.partner_id, ctx.key_scope, version)
        return envelope.open_with(aead, ctx, sealed)

    def seal_detached(self, ctx: SealContext, plaintext: bytes) -> tuple[bytes, bytes]:
        """(envelope, body): a 68-byte envelope for the database row and the ciphertext body for
        object storage. A tenant-key rotation re-wraps the envelope alone; the body never changes."""
        return envelope.split(self.seal(ctx, plaintext))

    def open_detached(self, ctx: SealContext, envelope_bytes: bytes, body: bytes) -> bytes:
        if len(envelope_bytes) != envelope.ENVELOPE_BYTES:
            raise SealError("not a detached envelope")
        return self.open(ctx, bytes(envelope_bytes) + bytes(body))

    def rewrap(self, partner_id: str, tenant_id: str | None, sealed: bytes) -> bytes:
        """The value with its data key re-wrapped under the tenant's active key (payload untouched)."""
        scope = tenant_id if tenant_id is not None else PARTNER_SCOPE
        old = self.tenant_key(partner_id, scope, envelope.tenant_key_version_of(sealed))
        version, new = self.active_tenant_key(partner_id, scope)
        return envelope.rewrap_with(old, new, version, partner_id, tenant_id, sealed)

    # ------------------------------------------------------------------ status

    def clear_cache(self) -> None:
        """Forget every unwrapped key (after a rotation; the next use unwraps afresh)."""
        self.cache.clear()
        self._root = None
        self._health = None

    def health(self) -> dict[str, Any]:
        """ok / degraded / error, probing the KMS at most every 5 s, never waiting on a stalled one.

        degraded (still ready): running on the secondary key, or the KMS is unreachable but
        keys unwrapped earlier are still usable (within KMS_CACHE_TTL + KMS_CACHE_GRACE).
        error: no key is usable. The probe runs in the background; a caller waits for it at
        most HEALTH_WAIT_SECONDS and otherwise gets the last known state.
        """
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_CACHE_SECONDS:
            return self._with_cached_keys(self._health[1])
        with self._lock:
            probe = self._health_probe
            if probe is None or not probe.is_alive():
                probe = self._health_probe = threading.Thread(target=self._run_probe, name="kms-health-probe",
                                                              daemon=True)
                probe.start()
        probe.join(HEALTH_WAIT_SECONDS)
        if self._health is not None and (not probe.is_alive() or now - self._health[0] < 60):
            return self._with_cached_keys(self._health[1])
        return self._with_cached_keys({"status": "error", "key_status": "unavailable",
                                       "message": "the KMS did not answer the health probe in time"})

    def _run_probe(self) -> None:
        started = time.monotonic()
        result = self._probe()
        self._health = (started, result)

    def _with_cached_keys(self, result: dict[str, Any]) -> dict[str, Any]:
        """An unreachable KMS with keys still usable from memory is degraded, not an error."""
        if result.get("status") != "error" or result.get("key_status") != "unavailable":
            return result
        usable = self.cache.usable_count()
        if not usable:
            return result
        return {**result, "status": "degraded", "key_status": "cached", "cached_keys": usable}

    def _probe(self) -> dict[str, Any]:
        try:
            # like seal/open, the probe creates the root when first boot has not run (tests, dev)
            root = self._load_root() or self.ensure_root()
        except ConfigError as exc:
            return {"status": "error", "key_status": "unavailable", "message": exc.problem}
        except Exception as exc:
            return {"status": "error", "message": getattr(exc, "message", None) or "cannot read the encryption root"}
        base = {"provider": root.provider, "key_ref": root.key_ref, "root_version": root.version,
                "last_rotation": _iso(root.activated_at) if root.version > 1 else None}
        messages = []
        for label, key_ref, wrapped in (("primary", root.key_ref, root.wrapped_check),
                                        ("secondary", root.secondary_key_ref, root.wrapped_check_secondary)):
            if not key_ref or wrapped is None:
                continue
            try:
                provider = self.provider_for(key_ref)
                check = self._kms(provider, "decrypt", lambda: provider.unwrap(wrapped, ROOT_CHECK_AAD))
                if not hmac.compare_digest(commitment(check, ROOT_CHECK_AAD), root.check_commitment):
                    raise SealError("check value mismatch")
            except (KmsError, SealError, ConfigError) as exc:
                messages.append(f"{label} key: {getattr(exc, 'message', None) or exc}")
                continue
            if label == "primary":
                self._degraded_since = None
                return {"status": "ok", "key_status": "active", **base}
            return {"status": "degraded", "key_status": "secondary", **base, "message": "; ".join(messages)}
        return {"status": "error", "key_status": "unavailable", **base,
                "message": "cannot open the encryption root: " + "; ".join(messages)}

    def close(self) -> None:
        for breaker in list(self._breakers.values()):
            breaker.close()
        for provider in list(self._providers.values()):
            try:
                provider.close()
            except Exception:
                pass
        self.cache.clear()


def _count_stale() -> None:
    try:
        from .. import metrics
    except ImportError:
        return
    metrics.KMS_STALE_KEYS_USED.inc()


def tenant_partner_unknown(tenant_id: str | None) -> ScaiVaultError:
    """The refusal to seal for a tenant whose partner ScaiKey has not told us yet (issue 9, F2)."""
    return ScaiVaultError("tenant_partner_unknown", "this tenant's partner is not known yet, so nothing can be "
                          "encrypted for it; retry once ScaiKey's tenant event or the identity sync has arrived",
                          details={"tenant_id": tenant_id})


def _iso(value) -> str | None:
    if value is None:
        return None
    return timestamp(value)


def _key_variable(settings: Settings) -> str:
    for name in ("KMS_KEY_ID", "KMS_KEY_NAME", "KMS_KEY_URL", "KMS_LABEL", "KMS_LOCAL_KEY_FILE"):
        if settings.kms_options.get(name):
            return name
    return "KMS_PROVIDER"
