-- System-wide records: one row per named singleton (first-boot markers and the like).
CREATE TABLE system_state (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
