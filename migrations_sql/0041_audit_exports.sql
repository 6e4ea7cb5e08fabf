-- Audit export jobs (spec/30 section 7.6): one row per POST /v1/audit/export.
CREATE TABLE audit_exports (
    id                 text PRIMARY KEY,                 -- exp_...
    tenant_id          text NOT NULL,
    partner_id         text,
    requested_by       text,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    format             text NOT NULL CHECK (format IN ('jsonl', 'csv')),
    filters            jsonb NOT NULL DEFAULT '{}'::jsonb,
    destination        jsonb NOT NULL DEFAULT '{}'::jsonb,
    estimated_records  bigint NOT NULL DEFAULT 0,
    records_written    bigint NOT NULL DEFAULT 0,
    manifest           jsonb NOT NULL DEFAULT '[]'::jsonb,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    heartbeat_at       timestamptz
);
CREATE INDEX audit_exports_tenant ON audit_exports (tenant_id, created_at DESC, id DESC);
CREATE INDEX audit_exports_unfinished ON audit_exports (status, heartbeat_at) WHERE status IN ('pending', 'running');
