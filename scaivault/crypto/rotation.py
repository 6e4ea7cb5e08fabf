"""Root and tenant key rotation: re-wrap keys, never rewrite sealed payloads; resumable.

Root rotation: a new root record for the configured KMS key(s) (asking the KMS for a new
key version first when the key is unchanged), every partner key re-wrapped under it in
small committed batches, then the new record activated. Re-running after a crash picks up
the `rotating` record and continues with the partner keys not yet moved.
"""
from __future__ import annotations

import hmac

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import ScaiVaultError
from . import envelope
from .context import PARTNER_SCOPE, partner_key_aad, tenant_key_aad
from .keyring import Keyring, RootRecord, commitment
from .kms import timed
from .errors import SealError
from .sealed_columns import sealed_columns

log = logging.getLogger("scaivault.crypto.rotation")

ROTATION_LOCK_KEY = 0x5CA1_0010
BATCH = 100


@dataclass
class RotationResult:
    kind: str
    target: str
    version: int
    rewrapped: int = 0
    resumed: bool = False
    kms_key_version_created: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "version": self.version, "rewrapped": self.rewrapped,
                "resumed": self.resumed, "kms_key_version_created": self.kms_key_version_created, **self.details}


class _RotationLock:
    """A session-level advisory lock held on one pooled connection for the whole rotation."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self._ctx = self.db.session()
        self.session = self._ctx.__enter__()
        if not self.session.scalar("SELECT pg_try_advisory_lock(:k)", k=ROTATION_LOCK_KEY):
            self._ctx.__exit__(None, None, None)
            raise ScaiVaultError("rotation_in_progress", "another key rotation is running; retry when it has finished")
        return self.session

    def __exit__(self, *exc):
        try:
            self.session.scalar("SELECT pg_advisory_unlock(:k)", k=ROTATION_LOCK_KEY)
        finally:
            self._ctx.__exit__(*exc)


def _journal_start(db, kind: str, target: str, actor: str | None) -> int:
    row = db.one("SELECT id FROM key_rotations WHERE kind = :k AND target = :t AND status = 'running'", k=kind, t=target)
    if row:
        return row["id"]
    return db.scalar("INSERT INTO key_rotations (kind, target, status, requested_by) VALUES (:k, :t, 'running', :a) "
                     "RETURNING id", k=kind, t=target, a=actor)


def _journal_progress(db, rotation_id: int, progress: dict) -> None:
    db.execute("UPDATE key_rotations SET progress = CAST(:p AS jsonb) WHERE id = :i", p=json.dumps(progress), i=rotation_id)


def _journal_finish(db, rotation_id: int, status: str, progress: dict, error: str | None = None) -> None:
    db.execute("UPDATE key_rotations SET status = :s, progress = CAST(:p AS jsonb), error = :e, finished_at = now() "
               "WHERE id = :i", s=status, p=json.dumps(progress), e=error, i=rotation_id)


def rotate_root(keyring: Keyring, *, actor: str | None = None) -> RotationResult:
    """Re-wrap every partner key under the configured KMS key(s); resumes an interrupted run."""
    db = keyring.db
    with _RotationLock(db):
        active = keyring.ensure_root()
        rotating_row = keyring._load_root("rotating")
        result = RotationResult("root", keyring.primary.key_ref, 0)
        if rotating_row is not None:
            new_root = rotating_row
            result.resumed = True
        else:
            if keyring.primary.key_ref == active.key_ref:
                # same key: ask the KMS for a fresh key version where it supports that
                result.kms_key_version_created = bool(keyring.primary.rotate_key())
            new_root = keyring.new_root_record(active.version + 1, "rotating")
            with db.session() as s:
                keyring.insert_root(s, new_root)
        result.version = new_root.version
        result.target = new_root.key_ref
        rotation_id = _journal_start(db, "root", new_root.key_ref, actor)
        try:
            result.rewrapped = _rewrap_partner_keys(keyring, new_root, rotation_id)
            with db.transaction() as tx:
                tx.execute("UPDATE kms_roots SET status = 'retired', retired_at = now() WHERE status = 'active'")
                tx.execute("UPDATE kms_roots SET status = 'active', activated_at = now() WHERE version = :v",
                           v=new_root.version)
        except Exception as exc:
            _journal_finish(db, rotation_id, "failed", {"rewrapped": result.rewrapped},
                            getattr(exc, "message", None) or type(exc).__name__)
            raise
        _journal_finish(db, rotation_id, "completed", {"rewrapped": result.rewrapped})
    keyring.clear_cache()
    log.info("root key rotation completed", extra={"root_version": result.version, "rewrapped": result.rewrapped})
    return result


def _rewrap_partner_keys(keyring: Keyring, new_root: RootRecord, rotation_id: int) -> int:
    db = keyring.db
    primary = keyring.provider_for(new_root.key_ref)
    secondary = keyring.provider_for(new_root.secondary_key_ref) if new_root.secondary_key_ref else None
    done = 0
    while True:
        rows = db.query("SELECT partner_id, root_version, wrapped, wrapped_secondary, commitment FROM partner_keys "
                        "WHERE root_version <> :v ORDER BY partner_id LIMIT :n", v=new_root.version, n=BATCH)
        if not rows:
            return done
        for row in rows:
            aad = partner_key_aad(row["partner_id"])
            old_root = keyring.root_by_version(row["root_version"])
            key = keyring._unwrap_with_failover(
                old_root, bytes(row["wrapped"]),
                bytes(row["wrapped_secondary"]) if row["wrapped_secondary"] is not None else None, aad)
            if not hmac.compare_digest(commitment(key, aad), bytes(row["commitment"])):
                raise ScaiVaultError("decryption_failed", f"partner key of {row['partner_id']} fails its commitment")
            wrapped = timed("encrypt", lambda: primary.wrap(key, aad))
            wrapped_2 = timed("encrypt", lambda: secondary.wrap(key, aad)) if secondary else None
            # the old root_version in the WHERE clause makes a concurrent writer lose cleanly
            done += db.execute("UPDATE partner_keys SET wrapped = :w, wrapped_secondary = :w2, root_version = :v, "
                               "rewrapped_at = now() WHERE partner_id = :p AND root_version = :old",
                               w=wrapped, w2=wrapped_2, v=new_root.version, p=row["partner_id"], old=row["root_version"])
        _journal_progress(db, rotation_id, {"rewrapped": done})


def rotate_tenant_key(keyring: Keyring, partner_id: str, tenant_id: str | None, *,
                      actor: str | None = None) -> RotationResult:
    """A new tenant key version; the data keys of every registered sealed column re-wrapped under it."""
    db = keyring.db
    scope = tenant_id if tenant_id is not None else PARTNER_SCOPE
    target = f"{partner_id}/{scope or '(partner)'}"
    with _RotationLock(db):
        keyring.active_tenant_key(partner_id, scope)            # exists before it is rotated
        partner = keyring.partner_aead(partner_id)
        running = db.one("SELECT id FROM key_rotations WHERE kind = 'tenant' AND target = :t AND status = 'running'",
                         t=target)
        result = RotationResult("tenant", target, 0, resumed=running is not None)
        if running is None:
            with db.transaction() as tx:
                current = tx.scalar("SELECT max(version) FROM tenant_keys WHERE partner_id = :p AND tenant_id = :t",
                                    p=partner_id, t=scope)
                version = current + 1
                wrapped = envelope.gcm_encrypt(partner, envelope.new_key(), tenant_key_aad(partner_id, scope, version))
                tx.execute("UPDATE tenant_keys SET status = 'retired', retired_at = now() "
                           "WHERE partner_id = :p AND tenant_id = :t AND status = 'active'", p=partner_id, t=scope)
                tx.execute("INSERT INTO tenant_keys (partner_id, tenant_id, version, wrapped, status) "
                           "VALUES (:p, :t, :v, :w, 'active')", p=partner_id, t=scope, v=version, w=wrapped)
        keyring.cache.discard(("active", partner_id, scope))
        version, _ = keyring.active_tenant_key(partner_id, scope)
        result.version = version
        rotation_id = _journal_start(db, "tenant", target, actor)
        try:
            counts, unreadable = {}, 0
            for column in sealed_columns():
                done, bad = _rewrap_column(keyring, column, partner_id, tenant_id, version)
                counts[f"{column.table}.{column.column}"] = done
                unreadable += bad
            result.rewrapped = sum(counts.values())
            result.details["columns"] = counts
            result.details["unreadable"] = unreadable
        except Exception as exc:
            _journal_finish(db, rotation_id, "failed", {"rewrapped": result.rewrapped},
                            getattr(exc, "message", None) or type(exc).__name__)
            raise
        _journal_finish(db, rotation_id, "completed", {"rewrapped": result.rewrapped, **result.details})
    log.info("tenant key rotation completed", extra={"target": target, "version": version, "rewrapped": result.rewrapped})
    return result


def _rewrap_column(keyring: Keyring, column, partner_id: str, tenant_id: str | None, version: int) -> tuple[int, int]:
    """(re-wrapped, unreadable) for one registered column; an unreadable row is logged and
    skipped, so one damaged value cannot block the rotation of all the others."""
    db = keyring.db
    if tenant_id is not None:
        # selected by partner AND tenant: a tenant id never reaches rows sealed under another partner
        where, params = f"{column.tenant_column} = :owner", {"owner": tenant_id}
        if column.partner_column:
            where += f" AND {column.partner_column} = :partner"
            params["partner"] = partner_id
    elif column.partner_column:
        where, params = f"{column.tenant_column} IS NULL AND {column.partner_column} = :owner", {"owner": partner_id}
    else:
        return 0, 0
    # the header's tenant key version is bytes 4..7 (big-endian u32); skip rows already moved
    sql = (f"SELECT {column.key_column} AS k, {column.column} AS v FROM {column.table} WHERE {where} "
           f"AND octet_length({column.column}) >= 68 AND get_byte({column.column}, 4) * 16777216 + get_byte({column.column}, 5) * 65536 "
           f"+ get_byte({column.column}, 6) * 256 + get_byte({column.column}, 7) <> :version "
           f"{{after}} ORDER BY {column.key_column} LIMIT {BATCH}")
    done = unreadable = 0
    after = None
    while True:
        # keyset pagination: skipped (unreadable) rows are never selected again
        if after is None:
            rows = db.query(sql.format(after=""), version=version, **params)
        else:
            rows = db.query(sql.format(after=f"AND {column.key_column} > :after"), version=version, after=after, **params)
        if not rows:
            return done, unreadable
        for row in rows:
            after = row["k"]
            old = bytes(row["v"])
            try:
                new = keyring.rewrap(partner_id, tenant_id, old)
            except SealError:
                unreadable += 1
                log.warning("sealed value cannot be opened; left as it is",
                            extra={"table": column.table, "column": column.column, "row": str(row["k"])})
                continue
            done += db.execute(f"UPDATE {column.table} SET {column.column} = :new "
                               f"WHERE {column.key_column} = :k AND {column.column} = :old", new=new, k=row["k"], old=old)
