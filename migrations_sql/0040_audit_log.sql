-- Audit log (spec/30 section 7), partitioned by month so that retention drops partitions.
-- Tamper evidence: every tenant has AUDIT_CHAIN_LANES independent hash chains ("lanes");
-- an entry stores its lane, its sequence number in the lane, the hash of its predecessor and
-- its own hash. audit_chain_heads holds the last (seq, hash) of each lane, so appending is one
-- statement that locks one small row per (tenant, lane) instead of the whole platform.
CREATE TABLE audit_log (
    id             text        NOT NULL,
    ts             timestamptz NOT NULL,
    tenant_id      text,                     -- NULL: a platform-level event
    partner_id     text,
    action         text        NOT NULL,
    identity_type  text,
    identity_id    text,
    secret_path    text COLLATE "C",         -- "C" so that path_prefix LIKE 'a/b/%' uses the index
    source_ip      text,
    user_agent     text,
    success        boolean     NOT NULL,
    duration_ms    integer,
    request_id     text,
    extra_data     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    chain_lane     smallint    NOT NULL,
    chain_seq      bigint      NOT NULL,
    prev_hash      bytea       NOT NULL,
    entry_hash     bytea       NOT NULL
) PARTITION BY RANGE (ts);

CREATE INDEX audit_log_tenant_ts ON audit_log (tenant_id, ts DESC, id DESC);
CREATE INDEX audit_log_tenant_identity ON audit_log (tenant_id, identity_id, ts DESC);
CREATE INDEX audit_log_tenant_path ON audit_log (tenant_id, secret_path, ts DESC) WHERE secret_path IS NOT NULL;
CREATE INDEX audit_log_request ON audit_log (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_log_chain ON audit_log (tenant_id, chain_lane, chain_seq);

-- Rows whose month has no partition yet land here instead of failing the request; the
-- partition job moves them into their month's partition when it creates it.
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

CREATE TABLE audit_chain_heads (
    chain_key   text     NOT NULL,          -- tenant_id, or '' for platform-level events
    lane        smallint NOT NULL,
    seq         bigint   NOT NULL,
    prev_hash   bytea    NOT NULL,
    hash        bytea    NOT NULL,
    PRIMARY KEY (chain_key, lane)
) WITH (fillfactor = 50);                   -- room for HOT updates: each append rewrites one head

-- When retention drops a partition, the last (seq, hash) it held for each lane is kept here,
-- so verification of the remaining entries starts from a known hash instead of genesis.
CREATE TABLE audit_chain_anchors (
    chain_key   text     NOT NULL,
    lane        smallint NOT NULL,
    seq         bigint   NOT NULL,
    hash        bytea    NOT NULL,
    anchored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_key, lane)
);

-- Monthly partitions from the previous month to three months ahead; the partition job keeps
-- creating them ahead of time and drops those past AUDIT_RETENTION.
DO $$
DECLARE
    m date := date_trunc('month', now() AT TIME ZONE 'UTC')::date - interval '1 month';
BEGIN
    FOR i IN 0..4 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
            'audit_log_' || to_char(m, 'YYYYMM'),
            (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
        m := m + interval '1 month';
    END LOOP;
END $$;
