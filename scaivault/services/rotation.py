"""Rotation policies, per-secret rotation clocks, the scheduler's scan and rotation history (spec/30 2-3).

Each attached secret has a row in rotation_state: its cycle number and the time it was last
rotated. A rotation (scheduled, manual or a client write answering a due notice) moves the
cycle on inside the transaction that writes the new version, guarded by the cycle it
expected, and rotation_history has a unique success per (secret, cycle): however many
instances scan, restart or catch up, one cycle is rotated at most once.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from pg8000.exceptions import DatabaseError

from ..audit import AuditEntry, record
from ..config import parse_duration
from ..db import Database, Session
from ..errors import ScaiVaultError, ValidationFailed
from ..events.outbox import SystemOrigin, emit
from ..lifecycle.clock import CLOCK
from ..lifecycle.generators import generate
from .. import pagination
from .policies import iso, page_limit
from .secret_policies import TenantScope, keyset_page, new_id, string_cursor, unique_violation

log = logging.getLogger("scaivault.rotation")

SCHEDULER = "rotation-scheduler"
ADVISORY_LOCK_KEY = 0x5C41_0011       # one scanner across instances
DEFAULT_GRACE = "48h"
RETRY_BASE_SECONDS = 300              # a failed auto-rotation is retried after 5 min, 10, 20 ... up to 6 h
RETRY_MAX_SECONDS = 6 * 3600
SCAN_BATCH = 500

AuditFn = Callable[..., AuditEntry]


class RotationRaced(ScaiVaultError):
    """Another runner rotated this cycle first; the write is rolled back."""

    def __init__(self) -> None:
        super().__init__("rotation_in_progress", "this rotation cycle was completed by another runner")


# ------------------------------------------------------------------ parsing and views
def _duration(value: Any, field: str) -> int:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ScaiVaultError("invalid_duration", f"{field} must be a duration such as 24h, 7d or 90d",
                             details={"field": field}) from None
    if seconds <= 0:
        raise ScaiVaultError("invalid_duration", f"{field} must be positive", details={"field": field})
    return seconds


def parse_warn_before(value: Any) -> list[dict]:
    """`"7d,1d"` or `["7d", "1d"]` -> [{"label", "seconds"}] largest first, duplicates removed."""
    if value is None or value == "" or value == []:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > 10:
        raise ScaiVaultError("invalid_duration", "warn_before must be a comma-separated list of durations (at most 10)",
                             details={"field": "warn_before"})
    out = {}
    for item in items:
        label = str(item).strip()
        out[label] = _duration(label, "warn_before")
    return [{"label": k, "seconds": v} for k, v in sorted(out.items(), key=lambda kv: -kv[1])]


def policy_view(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "description": row["description"],
            "interval": row["interval_text"], "interval_seconds": row["interval_seconds"],
            "grace_period": row["grace_text"], "warn_before": ",".join(w["label"] for w in row["warn_before"]),
            "auto_generate": row["auto_generate"], "secret_policy_id": row["secret_policy_id"],
            "webhook_ids": row["webhook_ids"], "is_active": row["is_active"],
            "secrets_count": row.get("secrets_count", 0), "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"])}


def history_view(row: dict) -> dict:
    return {"id": row["id"], "policy_id": row["policy_id"], "secret_path": row["secret_path"],
            "status": row["status"], "trigger": row["trigger"], "cycle": row["cycle"],
            "old_version": row["old_version"], "new_version": row["new_version"],
            "started_at": iso(row["started_at"]), "completed_at": iso(row["completed_at"]), "error": row["error"]}


def _iso_us(ts: datetime | None) -> str | None:
    return None if ts is None else iso(ts)


# ------------------------------------------------------------------ in-transaction pieces (called by the hook)
def relink(s: Session, secret: dict, policy_id: str | None, now: datetime) -> None:
    """The secret's rotation link changed: (re)start its clock at `now`, or stop it."""
    if policy_id is None:
        s.execute("DELETE FROM rotation_state WHERE secret_id = :id", id=secret["id"])
        return
    s.execute("""INSERT INTO rotation_state (secret_id, tenant_id, partner_id, policy_id, last_rotated_at)
                 VALUES (:id, :tenant, :partner, :policy, :now)
                 ON CONFLICT (secret_id) DO UPDATE SET policy_id = EXCLUDED.policy_id,
                        last_rotated_at = EXCLUDED.last_rotated_at, warned = '[]'::jsonb, due_notified_at = NULL,
                        overdue_notified_at = NULL, failed_attempts = 0, retry_at = NULL""",
              id=secret["id"], tenant=secret["tenant_id"], partner=secret["partner_id"], policy=policy_id, now=now)


def on_version_written(s: Session, secret: dict, path: str, old_version: int, new_version: int,
                       rotation: dict | None, origin, now: datetime) -> bool:
    """A version was written; returns True when it completes a rotation (events and history included).

    A write by the rotation service carries `rotation` (policy, expected cycle). A client write
    counts as the rotation when its secret's event-driven rotation is due (rotation.due with
    due_now was sent); any other write just restarts the clock, since the value is fresh.
    """
    if secret["rotation_policy_id"] is None or old_version == 0:
        return False
    state = s.one("""SELECT st.*, p.name AS policy_name, p.grace_seconds, p.auto_generate
                       FROM rotation_state st JOIN rotation_policies p ON p.id = st.policy_id
                      WHERE st.secret_id = :id FOR UPDATE OF st""", id=secret["id"])
    if state is None:
        return False
    if rotation is not None:
        if rotation["cycle"] != state["cycle"]:
            raise RotationRaced()
        trigger, auto = rotation["trigger"], True
    elif state["due_notified_at"] is not None:
        trigger, auto = "client_write", False
    else:
        s.execute("""UPDATE rotation_state SET last_rotated_at = :now, warned = '[]'::jsonb WHERE secret_id = :id""",
                  id=secret["id"], now=now)
        return False
    grace_ends = now + timedelta(seconds=state["grace_seconds"])
    s.execute("""UPDATE rotation_state SET cycle = cycle + 1, last_rotated_at = :now, warned = '[]'::jsonb,
                        due_notified_at = NULL, overdue_notified_at = NULL, failed_attempts = 0, retry_at = NULL,
                        grace_version = :old, grace_ends_at = :grace
                  WHERE secret_id = :id""", id=secret["id"], now=now, old=old_version, grace=grace_ends)
    updated = s.execute("""UPDATE rotation_history SET status = 'success', new_version = :new, old_version = :old,
                                  completed_at = :now
                            WHERE secret_id = :id AND cycle = :cycle AND status = 'pending'""",
                        id=secret["id"], cycle=state["cycle"], new=new_version, old=old_version, now=now)
    if not updated:
        s.execute("""INSERT INTO rotation_history (id, tenant_id, policy_id, secret_id, secret_path, cycle, status,
                                                   trigger, old_version, new_version, started_at, completed_at)
                     VALUES (:hid, :tenant, :policy, :id, :path, :cycle, 'success', :trigger, :old, :new, :now, :now)""",
                  hid=new_id("rh_"), tenant=secret["tenant_id"], policy=state["policy_id"], id=secret["id"], path=path,
                  cycle=state["cycle"], trigger=trigger, old=old_version, new=new_version, now=now)
    common = {"old_version": old_version, "new_version": new_version, "rotation_policy_id": state["policy_id"],
              "rotation_policy_name": state["policy_name"]}
    emit(s, "secret.rotated", origin, {**common, "grace_period_ends": _iso_us(grace_ends), "auto_generated": auto}, path)
    emit(s, "rotation.completed", origin, {**common, "trigger": trigger, "cycle": state["cycle"]}, path)
    _count_rotation("success")
    return True


def _count_rotation(status: str) -> None:
    try:
        from .. import metrics

        metrics.SECRET_ROTATIONS.labels(status=status).inc()
    except Exception:
        pass


def system_audit(tenant_id: str | None, partner_id: str | None, component: str = SCHEDULER) -> AuditFn:
    """An audit-entry builder for work ScaiVault does on its own (identity `system:<component>`)."""
    origin = SystemOrigin(tenant_id, partner_id, component)

    def build(action: str, *, secret_path: str | None = None, success: bool = True,
              extra: dict | None = None) -> AuditEntry:
        return AuditEntry(action=action, tenant_id=tenant_id, partner_id=partner_id, identity_type="system",
                          identity_id=origin.identity_id, secret_path=secret_path, success=success,
                          request_id=origin.request_id, extra_data=dict(extra or {}))
    return build


# ------------------------------------------------------------------ the service
class RotationService:
    """Policy CRUD, attach/detach, manual rotation, history, due list, and the scheduler's scan."""

    def __init__(self, db: Database, secret_store, clock=CLOCK):
        self.db = db
        self.store = secret_store
        self.clock = clock

    # ---------------------------------------------------------------- policies
    def _fetch(self, s: Session, scope: TenantScope, policy_id: str, lock: bool = False) -> dict:
        row = s.one("SELECT * FROM rotation_policies WHERE id = :id AND tenant_id = :tenant" + (" FOR UPDATE" if lock else ""),
                    id=policy_id, tenant=scope.tenant_id)
        if row is None:
            raise ScaiVaultError("rotation_policy_not_found", "no such rotation policy",
                                 details={"rotation_policy_id": str(policy_id)[:64]})
        return row

    def _with_count(self, s: Session, row: dict) -> dict:
        row = dict(row)
        row["secrets_count"] = s.scalar("SELECT count(*) FROM rotation_state WHERE policy_id = :id", id=row["id"])
        return row

    def _validate(self, s: Session, scope: TenantScope, body: dict, partial: bool) -> dict:
        out: dict[str, Any] = {}
        if "name" in body or not partial:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip() or len(name) > 128 or "\x00" in name:
                raise ValidationFailed({"name": "is required: 1..128 characters"})
            out["name"] = name.strip()
        if "description" in body:
            desc = body["description"] or ""
            if not isinstance(desc, str) or len(desc) > 2000 or "\x00" in desc:
                raise ValidationFailed({"description": "must be a string of at most 2000 characters"})
            out["description"] = desc
        if "interval" in body or not partial:
            if body.get("interval") is None:
                raise ValidationFailed({"interval": "is required"})
            out["interval_seconds"] = _duration(body["interval"], "interval")
            out["interval_text"] = body["interval"].strip()
        if "grace_period" in body or not partial:
            grace = body.get("grace_period") or DEFAULT_GRACE
            out["grace_seconds"] = _duration(grace, "grace_period")
            out["grace_text"] = grace.strip()
        if "warn_before" in body:
            out["warn_before"] = parse_warn_before(body["warn_before"])
        if "auto_generate" in body:
            if not isinstance(body["auto_generate"], bool):
                raise ValidationFailed({"auto_generate": "must be true or false"})
            out["auto_generate"] = body["auto_generate"]
        if "secret_policy_id" in body:
            sp = body["secret_policy_id"]
            if sp is not None and s.scalar("SELECT 1 FROM secret_policies WHERE id = :id AND tenant_id = :t",
                                           id=sp, t=scope.tenant_id) is None:
                raise ScaiVaultError("secret_policy_not_found", "no such secret policy",
                                     details={"secret_policy_id": str(sp)[:64]})
            out["secret_policy_id"] = sp
        if "webhook_ids" in body:
            ids = body["webhook_ids"] or []
            if not isinstance(ids, list) or len(ids) > 20 or not all(isinstance(i, str) for i in ids):
                raise ValidationFailed({"webhook_ids": "must be a list of at most 20 webhook ids"})
            known = {r["id"] for r in s.query("SELECT id FROM webhooks WHERE tenant_id = :t AND id = ANY(:ids)",
                                              t=scope.tenant_id, ids=ids)} if ids else set()
            missing = [i for i in ids if i not in known]
            if missing:
                raise ScaiVaultError("webhook_not_found", "no such webhook", details={"webhook_ids": missing[:20]})
            out["webhook_ids"] = list(dict.fromkeys(ids))
        if "interval_seconds" in out and any(w["seconds"] >= out["interval_seconds"] for w in out.get("warn_before", [])):
            raise ValidationFailed({"warn_before": "every threshold must be shorter than the interval"})
        return out

    def list_policies(self, scope: TenantScope, active_only: bool, limit: Any, cursor: str | None) -> dict:
        size = page_limit(limit)
        after = string_cursor(cursor, "rotation_policies")
        rows = self.db.query(
            """SELECT p.*, (SELECT count(*) FROM rotation_state st WHERE st.policy_id = p.id) AS secrets_count
                 FROM rotation_policies p WHERE p.tenant_id = :t AND (NOT :active OR p.is_active)
                  AND (CAST(:after AS text) IS NULL OR p.id > :after) ORDER BY p.id LIMIT :n""",
            t=scope.tenant_id, active=active_only, after=after, n=size + 1)
        return keyset_page("data", rows, size, policy_view, kind="rotation_policies")   # spec/30 3.2: `data`

    def get(self, scope: TenantScope, policy_id: str) -> dict:
        with self.db.session() as s:
            return policy_view(self._with_count(s, self._fetch(s, scope, policy_id)))

    def create(self, scope: TenantScope, body: dict, actor: str, audit: AuditFn) -> dict:
        try:
            with self.db.transaction() as s:
                f = self._validate(s, scope, body, partial=False)
                warn = f.get("warn_before", [])
                row = s.one("""INSERT INTO rotation_policies (id, tenant_id, partner_id, name, description, interval_text,
                                      interval_seconds, grace_text, grace_seconds, warn_before, warn_max_seconds,
                                      auto_generate, secret_policy_id, webhook_ids, created_by)
                               VALUES (:id, :t, :p, :name, :desc, :itext, :isec, :gtext, :gsec, CAST(:warn AS jsonb),
                                       :wmax, :auto, :sp, CAST(:wh AS jsonb), :actor) RETURNING *""",
                            id=new_id("rot_"), t=scope.tenant_id, p=scope.partner_id, name=f["name"],
                            desc=f.get("description", ""), itext=f["interval_text"], isec=f["interval_seconds"],
                            gtext=f["grace_text"], gsec=f["grace_seconds"], warn=json.dumps(warn),
                            wmax=max([w["seconds"] for w in warn], default=0), auto=f.get("auto_generate", False),
                            sp=f.get("secret_policy_id"), wh=json.dumps(f.get("webhook_ids", [])), actor=actor)
                record(s, audit("rotation_policy_create", extra={"rotation_policy_id": row["id"], "name": row["name"]}))
        except DatabaseError as exc:
            if unique_violation(exc):
                raise ScaiVaultError("conflict", "a rotation policy with this name exists",
                                     details={"name": body.get("name")}) from None
            raise
        return policy_view(row)

    def update(self, scope: TenantScope, policy_id: str, body: dict, audit: AuditFn,
               *, is_active: bool | None = None) -> dict:
        try:
            with self.db.transaction() as s:
                row = self._fetch(s, scope, policy_id, lock=True)
                f = self._validate(s, scope, body, partial=True)
                if is_active is not None:
                    f["is_active"] = is_active
                interval = f.get("interval_seconds", row["interval_seconds"])
                warn = f.get("warn_before", row["warn_before"])
                if any(w["seconds"] >= interval for w in warn):
                    raise ValidationFailed({"warn_before": "every threshold must be shorter than the interval"})
                merged = {**row, **f, "warn_before": json.dumps(warn), "webhook_ids": json.dumps(
                    f.get("webhook_ids", row["webhook_ids"])), "warn_max_seconds": max([w["seconds"] for w in warn], default=0)}
                row = s.one("""UPDATE rotation_policies SET name = :name, description = :description,
                                      interval_text = :interval_text, interval_seconds = :interval_seconds,
                                      grace_text = :grace_text, grace_seconds = :grace_seconds,
                                      warn_before = CAST(:warn_before AS jsonb), warn_max_seconds = :warn_max_seconds,
                                      auto_generate = :auto_generate, secret_policy_id = :secret_policy_id,
                                      webhook_ids = CAST(:webhook_ids AS jsonb), is_active = :is_active, updated_at = now()
                                WHERE id = :id RETURNING *""",
                            **{k: merged[k] for k in ("id", "name", "description", "interval_text", "interval_seconds",
                                                      "grace_text", "grace_seconds", "warn_before", "warn_max_seconds",
                                                      "auto_generate", "secret_policy_id", "webhook_ids", "is_active")})
                record(s, audit("rotation_policy_update", extra={"rotation_policy_id": policy_id,
                                                                 "fields": sorted(f)}))
                row = self._with_count(s, row)
        except DatabaseError as exc:
            if unique_violation(exc):
                raise ScaiVaultError("conflict", "a rotation policy with this name exists") from None
            raise
        return policy_view(row)

    def delete(self, scope: TenantScope, policy_id: str, audit: AuditFn) -> None:
        with self.db.transaction() as s:
            self._fetch(s, scope, policy_id, lock=True)
            detached = s.execute("UPDATE secrets SET rotation_policy_id = NULL WHERE tenant_id = :t AND rotation_policy_id = :id",
                                 t=scope.tenant_id, id=policy_id)
            s.execute("DELETE FROM rotation_policies WHERE id = :id", id=policy_id)   # rotation_state cascades
            record(s, audit("rotation_policy_delete", extra={"rotation_policy_id": policy_id, "detached": detached}))

    def _secret_row(self, s: Session, owner, path: str, lock: bool = True) -> dict:
        row = s.one(f"SELECT s.* FROM secrets s WHERE {owner.where()} AND s.path = :path AND s.deleted_at IS NULL"
                    + (" FOR UPDATE" if lock else ""), path=path, **owner.params())
        if row is None:
            raise ScaiVaultError("secret_not_found", "no secret at this path", details={"path": path})
        return row

    def attach(self, scope: TenantScope, owner, policy_id: str, path: str, audit: AuditFn) -> dict:
        with self.db.transaction() as s:
            policy = self._fetch(s, scope, policy_id)
            secret = self._secret_row(s, owner, path)
            s.execute("UPDATE secrets SET rotation_policy_id = :p WHERE id = :id", p=policy_id, id=secret["id"])
            now = self.clock.now()
            relink(s, secret, policy_id, now)
            record(s, audit("rotation_attach", secret_path=path, extra={"rotation_policy_id": policy_id}))
        return {"policy_id": policy_id, "secret_path": path, "attached_at": iso(now),
                "last_rotated_at": iso(now), "next_rotation_at": iso(now + timedelta(seconds=policy["interval_seconds"]))}

    def detach(self, scope: TenantScope, owner, policy_id: str, path: str, audit: AuditFn) -> None:
        with self.db.transaction() as s:
            self._fetch(s, scope, policy_id)
            target = self._secret_row(s, owner, path)
            if target["rotation_policy_id"] != policy_id:
                raise ScaiVaultError("secret_not_found", "this secret is not attached to the policy",
                                     details={"path": path, "rotation_policy_id": policy_id})
            s.execute("UPDATE secrets SET rotation_policy_id = NULL WHERE id = :id", id=target["id"])
            relink(s, target, None, self.clock.now())
            record(s, audit("rotation_detach", secret_path=path, extra={"rotation_policy_id": policy_id}))

    def history(self, scope: TenantScope, policy_id: str, status: str | None, limit: Any, cursor: str | None) -> dict:
        if status not in (None, "", "success", "failed", "pending"):
            raise ScaiVaultError("invalid_request", "status must be success, failed or pending")
        with self.db.session() as s:
            self._fetch(s, scope, policy_id)
        size = page_limit(limit)
        after = string_cursor(cursor, "rotation_history")
        rows = self.db.query("""SELECT * FROM rotation_history WHERE policy_id = :p
                                   AND (CAST(:status AS text) IS NULL OR status = :status)
                                   AND (CAST(:after AS text) IS NULL OR id < :after)
                                 ORDER BY id DESC LIMIT :n""",
                             p=policy_id, status=status or None, after=after, n=size + 1)
        return keyset_page("data", rows, size, history_view, kind="rotation_history")

    def due(self, scope: TenantScope, within_hours: int, include_overdue: bool, policy_id: str | None,
            limit: Any = None, cursor: str | None = None) -> dict:
        """Secrets due within `within_hours` (and overdue ones unless excluded), soonest first, on the shared
        pagination (scaivault.pagination: limit, signed cursor over (due_at, path), has_more)."""
        now = self.clock.now()
        size = page_limit(limit)
        after = pagination.decode_cursor(cursor, "rotation_due")
        if after is not None and not (isinstance(after, list) and len(after) == 2
                                      and all(isinstance(x, str) for x in after)):
            raise ScaiVaultError("invalid_cursor", "the cursor belongs to another listing; start again without it")
        after_due = datetime.fromisoformat(after[0].replace("Z", "+00:00")) if after else None
        rows = self.db.query(
            """SELECT * FROM (
                 SELECT s.path, st.policy_id, p.name AS policy_name, p.auto_generate, st.last_rotated_at, st.cycle,
                        st.last_rotated_at + make_interval(secs => p.interval_seconds) AS due_at,
                        p.grace_seconds, st.overdue_notified_at
                   FROM rotation_state st JOIN secrets s ON s.id = st.secret_id
                   JOIN rotation_policies p ON p.id = st.policy_id
                  WHERE st.tenant_id = :t AND s.deleted_at IS NULL AND p.is_active
                    AND (CAST(:policy AS text) IS NULL OR st.policy_id = :policy)) d
                WHERE d.due_at <= :horizon AND (:overdue OR d.due_at > :now)
                  AND (CAST(:after_due AS timestamptz) IS NULL OR (d.due_at, d.path) > (:after_due, :after_path))
                ORDER BY d.due_at, d.path LIMIT :n""",
            t=scope.tenant_id, policy=policy_id, horizon=now + timedelta(hours=within_hours), now=now,
            overdue=include_overdue, after_due=after_due, after_path=after[1] if after else None, n=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        items = [{"secret_path": r["path"], "policy_id": r["policy_id"], "policy_name": r["policy_name"],
                  "due_at": iso(r["due_at"]), "last_rotated_at": iso(r["last_rotated_at"]),
                  "overdue": r["due_at"] <= now, "auto_generate": r["auto_generate"],
                  "grace_ends_at": iso(r["due_at"] + timedelta(seconds=r["grace_seconds"]))} for r in rows]
        last = [iso(rows[-1]["due_at"]), rows[-1]["path"]] if rows else None
        return pagination.page("data", items, more, last, kind="rotation_due")

    # ---------------------------------------------------------------- rotating
    def rotate_now(self, scope: TenantScope, owner, policy_id: str, paths: list[str] | None, actor_audit: AuditFn) -> list[dict]:
        """Rotate every attached secret (or `paths`) now; one history item per secret."""
        with self.db.session() as s:
            policy = self._fetch(s, scope, policy_id)
            rows = s.query(f"""SELECT s.*, st.cycle, st.due_notified_at FROM rotation_state st
                                  JOIN secrets s ON s.id = st.secret_id
                                 WHERE st.policy_id = :p AND {owner.where()} AND s.deleted_at IS NULL
                                   AND (CAST(:paths AS text[]) IS NULL OR s.path = ANY(:paths)) ORDER BY s.path""",
                           p=policy_id, paths=paths, **owner.params())
        if paths:
            missing = sorted(set(paths) - {r["path"] for r in rows})
            if missing:
                raise ScaiVaultError("secret_not_found", "some paths are not attached to this policy",
                                     details={"paths": missing[:50]})
        return [self.rotate_secret(policy, owner, r, "manual", actor_audit) for r in rows]

    def rotate_path(self, scope: TenantScope, owner, path: str, actor_audit: AuditFn) -> dict:
        """POST /v1/secrets/{path}:rotate: rotate one secret through its attached policy."""
        with self.db.session() as s:
            secret = self._secret_row(s, owner, path, lock=False)
            if secret["rotation_policy_id"] is None:
                raise ScaiVaultError("rotation_policy_not_found", "this secret has no rotation policy attached",
                                     details={"path": path})
            policy = self._fetch(s, scope, secret["rotation_policy_id"])
            state = s.one("SELECT cycle, due_notified_at FROM rotation_state WHERE secret_id = :id", id=secret["id"])
        if state is None:
            with self.db.transaction() as s:
                relink(s, secret, policy["id"], self.clock.now())
            state = {"cycle": 1, "due_notified_at": None}
        return self.rotate_secret(policy, owner, {**secret, **state}, "manual", actor_audit)

    def _recipe(self, s: Session, policy: dict, secret: dict) -> list[dict] | None:
        """The secret's own recipe wins over the policy's (it is the more specific); None: keep the data's keys."""
        for sp in (secret.get("secret_policy_id"), policy["secret_policy_id"]):
            if sp:
                row = s.one("SELECT fields FROM secret_policies WHERE id = :id AND is_active", id=sp)
                if row is not None:
                    return row["fields"]
        return None

    def rotate_secret(self, policy: dict, owner, secret: dict, trigger: str, audit: AuditFn) -> dict:
        """One rotation of `secret` (with its `cycle`): auto-generate, or notify for event-driven policies."""
        from .secrets import WriteRequest

        now = self.clock.now()
        path = secret["path"]
        origin_audit = audit
        if not policy["auto_generate"]:
            return self._notify_due(policy, secret, origin_audit("rotate", secret_path=path), now, trigger)
        try:
            with self.db.session() as s:
                recipe = self._recipe(s, policy, secret)
            if recipe is not None:
                data = generate(recipe)
            else:
                current = self.store.read(owner, path, None, origin_audit)["data"]
                data = generate([{"name": k, "generator": "random", "config": {"length": 32}} for k in current] or
                                [{"name": "value", "generator": "random", "config": {"length": 32}}])
            req = WriteRequest(data=data, rotation={"policy_id": policy["id"], "cycle": secret["cycle"],
                                                    "trigger": trigger})
            view, _ = self.store.write(owner, path, req, origin_audit("rotate").identity_id, origin_audit)
        except RotationRaced:
            return {"policy_id": policy["id"], "secret_path": path, "status": "skipped", "cycle": secret["cycle"],
                    "error": {"code": "rotation_in_progress"}}
        except Exception as exc:
            return self._failed(policy, secret, origin_audit("rotate", secret_path=path), now, trigger, exc)
        with self.db.session() as s:
            row = s.one("SELECT * FROM rotation_history WHERE secret_id = :id AND cycle = :c AND status = 'success'",
                        id=secret["id"], c=secret["cycle"])
        return history_view(row) if row else {"policy_id": policy["id"], "secret_path": path, "status": "success",
                                              "new_version": view["version"]}

    def _failed(self, policy: dict, secret: dict, origin, now: datetime, trigger: str, exc: Exception) -> dict:
        code = exc.code if isinstance(exc, ScaiVaultError) else "internal_error"
        message = exc.message if isinstance(exc, ScaiVaultError) else type(exc).__name__
        log.warning("rotation failed", extra={"path": secret["path"], "error": code})
        error = {"code": code, "message": message}
        with self.db.transaction() as s:
            attempts = s.scalar("""UPDATE rotation_state SET failed_attempts = failed_attempts + 1,
                                          retry_at = :now + make_interval(secs => LEAST(:cap, :base * power(2, failed_attempts)))
                                    WHERE secret_id = :id AND cycle = :c RETURNING failed_attempts""",
                                id=secret["id"], c=secret["cycle"], now=now, cap=RETRY_MAX_SECONDS, base=RETRY_BASE_SECONDS)
            row = s.one("""INSERT INTO rotation_history (id, tenant_id, policy_id, secret_id, secret_path, cycle, status,
                                                         trigger, old_version, error, started_at, completed_at)
                           VALUES (:hid, :t, :p, :sid, :path, :c, 'failed', :trigger, :old, CAST(:err AS jsonb), :now, :now)
                           RETURNING *""",
                        hid=new_id("rh_"), t=secret["tenant_id"], p=policy["id"], sid=secret["id"], path=secret["path"],
                        c=secret["cycle"], trigger=trigger, old=secret["current_version"], err=json.dumps(error), now=now)
            emit(s, "rotation.failed", origin, {"rotation_policy_id": policy["id"], "rotation_policy_name": policy["name"],
                                                "error": error, "attempt": attempts or 1, "cycle": secret["cycle"]},
                 secret["path"])
            record(s, AuditEntry(action="rotate", tenant_id=origin.tenant_id, partner_id=origin.partner_id,
                                 identity_type="system" if (origin.identity_id or "").startswith("system:") else "user",
                                 identity_id=origin.identity_id, secret_path=secret["path"], success=False,
                                 request_id=origin.request_id, extra_data={"error": code, "rotation_policy_id": policy["id"]}))
        _count_rotation("failed")
        return history_view(row)

    def _notify_due(self, policy: dict, secret: dict, origin, now: datetime, trigger: str) -> dict:
        """Event-driven: rotation.due with due_now, and a pending history entry, once per cycle."""
        with self.db.transaction() as s:
            st = s.one("SELECT * FROM rotation_state WHERE secret_id = :id AND cycle = :c FOR UPDATE",
                       id=secret["id"], c=secret["cycle"])
            pending = s.one("SELECT * FROM rotation_history WHERE secret_id = :id AND cycle = :c AND status = 'pending'",
                            id=secret["id"], c=secret["cycle"])
            if st is None:
                return history_view(pending) if pending else {"secret_path": secret["path"], "status": "skipped"}
            if st["due_notified_at"] is None:
                s.execute("UPDATE rotation_state SET due_notified_at = :now WHERE secret_id = :id", id=secret["id"], now=now)
                due_at = st["last_rotated_at"] + timedelta(seconds=policy["interval_seconds"])
                emit(s, "rotation.due", origin, {
                    "threshold": None, "warn_before": None, "due_now": True, "due_at": iso(min(due_at, now)),
                    "rotation_policy_id": policy["id"], "rotation_policy_name": policy["name"],
                    "overdue_at": iso(max(due_at, now) + timedelta(seconds=policy["grace_seconds"])),
                    "trigger": trigger}, secret["path"])
            if pending is None:
                pending = s.one("""INSERT INTO rotation_history (id, tenant_id, policy_id, secret_id, secret_path, cycle,
                                                                 status, trigger, old_version, started_at)
                                   VALUES (:hid, :t, :p, :sid, :path, :c, 'pending', :trigger, :old, :now) RETURNING *""",
                                hid=new_id("rh_"), t=secret["tenant_id"], p=policy["id"], sid=secret["id"],
                                path=secret["path"], c=secret["cycle"], trigger=trigger,
                                old=secret["current_version"], now=now)
        return history_view(pending)

    # ---------------------------------------------------------------- the scheduler's scan
    def scan(self) -> dict:
        """One scheduler tick across all tenants, under the cross-instance advisory lock."""
        stats = {"locked": False, "warned": 0, "rotated": 0, "due": 0, "overdue": 0, "failed": 0, "grace_ended": 0,
                 "expiring": 0, "expired": 0, "certificates_expiring": 0}
        with self.db.session() as lock_session:
            if not lock_session.scalar("SELECT pg_try_advisory_lock(:k)", k=ADVISORY_LOCK_KEY):
                return stats
            stats["locked"] = True
            try:
                self._scan_rotations(stats)
                self._scan_expiry(stats)
                self._scan_certificates(stats)
            finally:
                lock_session.scalar("SELECT pg_advisory_unlock(:k)", k=ADVISORY_LOCK_KEY)
        return stats

    def queue_depth(self) -> int:
        now = self.clock.now()
        return int(self.db.scalar("""SELECT count(*) FROM rotation_state st JOIN rotation_policies p ON p.id = st.policy_id
                                      WHERE p.is_active AND st.last_rotated_at + make_interval(secs => p.interval_seconds) <= :now""",
                                  now=now) or 0)

    def _scan_rotations(self, stats: dict) -> None:
        from .secrets import SecretOwner

        now = self.clock.now()
        rows = self.db.query(
            """SELECT st.*, s.path, s.current_version, s.secret_policy_id, s.rotation_policy_id,
                      p.id AS p_id, p.name AS p_name, p.interval_seconds, p.grace_seconds, p.warn_before,
                      p.auto_generate, p.secret_policy_id AS p_secret_policy_id
                 FROM rotation_state st JOIN secrets s ON s.id = st.secret_id
                 JOIN rotation_policies p ON p.id = st.policy_id
                WHERE p.is_active AND s.deleted_at IS NULL
                  AND (st.last_rotated_at + make_interval(secs => p.interval_seconds - p.warn_max_seconds) <= :now
                       OR st.grace_ends_at <= :now)
                ORDER BY st.last_rotated_at LIMIT :n""", now=now, n=SCAN_BATCH)
        for r in rows:
            owner = SecretOwner(r["partner_id"], r["tenant_id"])
            audit = system_audit(r["tenant_id"], r["partner_id"])
            policy = {"id": r["p_id"], "name": r["p_name"], "interval_seconds": r["interval_seconds"],
                      "grace_seconds": r["grace_seconds"], "auto_generate": r["auto_generate"],
                      "secret_policy_id": r["p_secret_policy_id"]}
            secret = {"id": r["secret_id"], "path": r["path"], "tenant_id": r["tenant_id"], "partner_id": r["partner_id"],
                      "current_version": r["current_version"], "secret_policy_id": r["secret_policy_id"],
                      "cycle": r["cycle"]}
            try:
                if r["grace_ends_at"] is not None and r["grace_ends_at"] <= now:
                    self._end_grace(owner, r, audit, now)
                    stats["grace_ended"] += 1
                due_at = r["last_rotated_at"] + timedelta(seconds=r["interval_seconds"])
                if now < due_at:
                    stats["warned"] += self._warn(r, policy, audit, now, due_at)
                elif policy["auto_generate"]:
                    if r["retry_at"] is None or r["retry_at"] <= now:
                        item = self.rotate_secret(policy, owner, secret, "schedule", audit)
                        stats["rotated" if item.get("status") == "success" else "failed"] += 1
                elif r["due_notified_at"] is None:
                    self._notify_due(policy, secret, audit("rotate", secret_path=r["path"]), now, "schedule")
                    stats["due"] += 1
                elif r["overdue_notified_at"] is None and now >= r["due_notified_at"] + timedelta(seconds=r["grace_seconds"]):
                    stats["overdue"] += self._overdue(r, policy, audit, now)
            except Exception as exc:  # one broken secret must not stop the scan of the others
                log.warning("rotation scan step failed", extra={"path": r["path"], "error": type(exc).__name__})

    def _warn(self, r: dict, policy: dict, audit: AuditFn, now: datetime, due_at: datetime) -> int:
        crossed = [w for w in r["warn_before"] if due_at - timedelta(seconds=w["seconds"]) <= now]
        fresh = [w for w in crossed if w["label"] not in r["warned"]]
        if not fresh:
            return 0
        nearest = min(fresh, key=lambda w: w["seconds"])      # after downtime only the latest threshold is news
        with self.db.transaction() as s:
            n = s.execute("""UPDATE rotation_state SET warned = CAST(:warned AS jsonb)
                              WHERE secret_id = :id AND cycle = :c AND warned = CAST(:old AS jsonb)""",
                          id=r["secret_id"], c=r["cycle"], old=json.dumps(r["warned"]),
                          warned=json.dumps(sorted(set(r["warned"]) | {w["label"] for w in crossed})))
            if n:
                emit(s, "rotation.due", audit("rotate", secret_path=r["path"]), {
                    "threshold": nearest["label"], "warn_before": nearest["label"], "due_now": False,
                    "due_at": iso(due_at), "rotation_policy_id": policy["id"], "rotation_policy_name": policy["name"]},
                    r["path"])
        return n

    def _overdue(self, r: dict, policy: dict, audit: AuditFn, now: datetime) -> int:
        with self.db.transaction() as s:
            n = s.execute("""UPDATE rotation_state SET overdue_notified_at = :now
                              WHERE secret_id = :id AND cycle = :c AND overdue_notified_at IS NULL""",
                          id=r["secret_id"], c=r["cycle"], now=now)
            if n:
                due_at = r["last_rotated_at"] + timedelta(seconds=r["interval_seconds"])
                emit(s, "rotation.overdue", audit("rotate", secret_path=r["path"]), {
                    "due_at": iso(due_at), "overdue_since": iso(r["due_notified_at"] + timedelta(seconds=r["grace_seconds"])),
                    "rotation_policy_id": policy["id"], "rotation_policy_name": policy["name"],
                    "current_version": r["current_version"]}, r["path"])
        return n

    def _end_grace(self, owner, r: dict, audit: AuditFn, now: datetime) -> None:
        """The superseded version's grace is over: destroy it (reads answer 410 version_destroyed)."""
        with self.db.transaction() as s:
            s.one("SELECT id FROM secrets s WHERE s.id = :id FOR UPDATE", id=r["secret_id"])
            st = s.one("SELECT grace_version, grace_ends_at FROM rotation_state WHERE secret_id = :id FOR UPDATE",
                       id=r["secret_id"])
            if st is None or st["grace_version"] is None or st["grace_ends_at"] > now:
                return
            destroyed = s.execute("""UPDATE secret_versions SET sealed_data = NULL, destroyed_at = now(),
                                            destroyed_by = :actor
                                      WHERE secret_id = :id AND version = :v AND destroyed_at IS NULL""",
                                  id=r["secret_id"], v=st["grace_version"], actor=f"system:{SCHEDULER}")
            s.execute("UPDATE rotation_state SET grace_version = NULL, grace_ends_at = NULL WHERE secret_id = :id",
                      id=r["secret_id"])
            if destroyed:
                record(s, audit("delete", secret_path=r["path"], extra={"operation": "grace_period_ended",
                                                                        "versions": [st["grace_version"]]}))

    # ---------------------------------------------------------------- expiry notices
    def _scan_expiry(self, stats: dict) -> None:
        now = self.clock.now()
        horizon = now + timedelta(days=366)
        rows = self.db.query("""SELECT s.id, s.path, s.tenant_id, s.partner_id, s.expires_at, s.metadata
                                  FROM secrets s
                                 WHERE s.expires_at IS NOT NULL AND s.deleted_at IS NULL AND s.expires_at <= :horizon
                                   AND NOT EXISTS (SELECT 1 FROM secret_expiry_notices n WHERE n.secret_id = s.id
                                                   AND n.expires_at = s.expires_at AND n.threshold = 'expired')
                                 ORDER BY s.expires_at LIMIT :n""", horizon=horizon, n=SCAN_BATCH)
        for r in rows:
            try:
                stats[self._expiry_notice(r, now)] += 1
            except KeyError:
                pass
            except Exception as exc:
                log.warning("expiry scan step failed", extra={"path": r["path"], "error": type(exc).__name__})

    def _expiry_notice(self, r: dict, now: datetime) -> str:
        thresholds = notify_before(r["metadata"])
        origin = SystemOrigin(r["tenant_id"], r["partner_id"], SCHEDULER)
        with self.db.transaction() as s:
            sent = {n["threshold"] for n in s.query(
                "SELECT threshold FROM secret_expiry_notices WHERE secret_id = :id AND expires_at = :e",
                id=r["id"], e=r["expires_at"])}
            if r["expires_at"] <= now:
                labels, event = ["expired"], "secret.expired"
                data = {"expires_at": iso(r["expires_at"]), "expired_at": iso(r["expires_at"])}
                labels += [label for label, _ in thresholds]
            else:
                crossed = [(label, sec) for label, sec in thresholds if r["expires_at"] - timedelta(seconds=sec) <= now]
                fresh = [c for c in crossed if c[0] not in sent]
                if not fresh:
                    return "none"
                label, _ = min(fresh, key=lambda c: c[1])      # only the nearest threshold is news
                labels, event = [c[0] for c in crossed], "secret.expiring"
                remaining = r["expires_at"] - now
                data = {"expires_at": iso(r["expires_at"]), "days_remaining": round(remaining.total_seconds() / 86400), "threshold": label}
            new = [label for label in labels if label not in sent]
            for label in new:
                s.execute("""INSERT INTO secret_expiry_notices (secret_id, expires_at, threshold) VALUES (:id, :e, :t)
                             ON CONFLICT DO NOTHING""", id=r["id"], e=r["expires_at"], t=label)
            if event == "secret.expired" and "expired" in sent:
                return "none"
            emit(s, event, origin, data, r["path"])
        return "expired" if event == "secret.expired" else "expiring"


    def _scan_certificates(self, stats: dict) -> None:
        """`certificate.expiring` once per threshold (30d, 7d, 1d) for live, unrenewed certificates."""
        if not self.db.scalar("SELECT to_regclass('pki_certificates') IS NOT NULL"):
            return
        now = self.clock.now()
        thresholds = notify_before(None)
        rows = self.db.query("""SELECT c.id, c.tenant_id, c.partner_id, c.serial_number, c.ca_id, c.not_after,
                                       c.secret_path, c.common_name
                                  FROM pki_certificates c
                                 WHERE c.revoked_at IS NULL AND c.renewed_by IS NULL
                                   AND c.not_after > :now AND c.not_after <= :horizon
                                 ORDER BY c.not_after LIMIT :n""",
                             now=now, horizon=now + timedelta(seconds=thresholds[0][1]), n=SCAN_BATCH)
        for r in rows:
            crossed = [(label, sec) for label, sec in thresholds if r["not_after"] - timedelta(seconds=sec) <= now]
            with self.db.transaction() as s:
                sent = {n["threshold"] for n in s.query(
                    "SELECT threshold FROM certificate_expiry_notices WHERE certificate_id = :id", id=r["id"])}
                fresh = [c for c in crossed if c[0] not in sent]
                if not fresh:
                    continue
                label = min(fresh, key=lambda c: c[1])[0]     # only the nearest threshold is news
                for c in crossed:
                    s.execute("""INSERT INTO certificate_expiry_notices (certificate_id, threshold) VALUES (:id, :t)
                                 ON CONFLICT DO NOTHING""", id=r["id"], t=c[0])
                emit(s, "certificate.expiring", SystemOrigin(r["tenant_id"], r["partner_id"], SCHEDULER), {
                    "certificate_id": r["id"], "serial_number": r["serial_number"], "ca_id": r["ca_id"],
                    "common_name": r["common_name"], "expires_at": iso(r["not_after"]), "threshold": label,
                    "days_remaining": round((r["not_after"] - now).total_seconds() / 86400)}, r["secret_path"])
                stats["certificates_expiring"] += 1


DEFAULT_NOTIFY_BEFORE = ("30d", "7d", "1d")


def notify_before(metadata: dict | None) -> list[tuple[str, int]]:
    """The secret's expiry thresholds: `metadata.notify_before` (list or "30d,7d") when valid, else 30d,7d,1d."""
    raw = (metadata or {}).get("notify_before")
    try:
        parsed = parse_warn_before(raw) if raw else []
    except ScaiVaultError:
        parsed = []
    if not parsed:
        parsed = parse_warn_before(list(DEFAULT_NOTIFY_BEFORE))
    return [(w["label"], w["seconds"]) for w in parsed]
