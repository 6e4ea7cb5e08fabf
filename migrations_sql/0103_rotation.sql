-- Rotation policies (spec/30 sections 2-3), the per-secret rotation clock, its history, and
-- the expiry notices already sent (secret.expiring / secret.expired fire once each).
CREATE TABLE rotation_policies (
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL,
    partner_id        text,
    name              text NOT NULL,
    description       text NOT NULL DEFAULT '',
    interval_text     text NOT NULL,
    interval_seconds  bigint NOT NULL,
    grace_text        text NOT NULL DEFAULT '48h',
    grace_seconds     bigint NOT NULL,
    warn_before       jsonb NOT NULL DEFAULT '[]'::jsonb,   -- [{"label": "7d", "seconds": 604800}, ...] largest first
    warn_max_seconds  bigint NOT NULL DEFAULT 0,
    auto_generate     boolean NOT NULL DEFAULT false,
    secret_policy_id  text,
    webhook_ids       jsonb NOT NULL DEFAULT '[]'::jsonb,
    is_active         boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX rotation_policies_name ON rotation_policies (tenant_id, name);

-- One clock per attached secret. `cycle` counts rotations; a rotation moves it on in the
-- transaction that writes the new version, so one cycle can never be rotated twice.
CREATE TABLE rotation_state (
    secret_id            bigint PRIMARY KEY REFERENCES secrets (id) ON DELETE CASCADE,
    tenant_id            text,
    partner_id           text NOT NULL,
    policy_id            text NOT NULL REFERENCES rotation_policies (id) ON DELETE CASCADE,
    cycle                integer NOT NULL DEFAULT 1,
    last_rotated_at      timestamptz NOT NULL,
    warned               jsonb NOT NULL DEFAULT '[]'::jsonb,
    due_notified_at      timestamptz,
    overdue_notified_at  timestamptz,
    failed_attempts      integer NOT NULL DEFAULT 0,
    retry_at             timestamptz,
    grace_version        integer,
    grace_ends_at        timestamptz,
    attached_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rotation_state_policy ON rotation_state (policy_id);

CREATE TABLE rotation_history (
    id            text PRIMARY KEY,
    tenant_id     text,
    policy_id     text NOT NULL,
    secret_id     bigint,
    secret_path   text NOT NULL,
    cycle         integer NOT NULL,
    status        text NOT NULL,
    trigger       text NOT NULL,
    old_version   integer,
    new_version   integer,
    error         jsonb,
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE INDEX rotation_history_policy ON rotation_history (policy_id, started_at DESC, id);
-- the database itself refuses a second successful rotation of one cycle
CREATE UNIQUE INDEX rotation_history_once ON rotation_history (secret_id, cycle) WHERE status = 'success';

CREATE TABLE secret_expiry_notices (
    secret_id   bigint NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    threshold   text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (secret_id, expires_at, threshold)
);
