-- Group commit (issue 10): many audited reads in one statement, a secret write in one statement.
--
-- sv_audit_append appends one entry to its tenant's hash chain exactly as audit/writer.py's
-- single-entry statement does (lane = backend pid % 32749, head row upserted and locked, hash =
-- sha256(prev || int2(lane) || int8(seq) || canonical bytes)). A function can do it many times in
-- one statement, which a single INSERT ... ON CONFLICT cannot (it may not touch a head row twice).

CREATE OR REPLACE FUNCTION sv_audit_append(p_canon bytea, a jsonb, p_extra jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_lane smallint := (pg_backend_pid() % 32749)::smallint;
    v_genesis bytea := decode(repeat('00', 32), 'hex');
    h record;
BEGIN
    INSERT INTO audit_chain_heads AS ch (chain_key, lane, seq, prev_hash, hash)
    VALUES (COALESCE(a->>'tenant_id', ''), v_lane, 1, v_genesis,
            sha256(v_genesis || int2send(v_lane) || int8send(1::bigint) || p_canon))
    ON CONFLICT (chain_key, lane) DO UPDATE
       SET seq = ch.seq + 1,
           prev_hash = ch.hash,
           hash = sha256(ch.hash || int2send(ch.lane) || int8send(ch.seq + 1) || p_canon)
    RETURNING ch.lane, ch.seq, ch.prev_hash, ch.hash INTO h;
    INSERT INTO audit_log (id, ts, tenant_id, partner_id, action, identity_type, identity_id,
                           secret_path, source_ip, user_agent, success, duration_ms, request_id,
                           extra_data, chain_lane, chain_seq, prev_hash, entry_hash)
    VALUES (a->>'id', (a->>'ts')::timestamptz, a->>'tenant_id', a->>'partner_id', a->>'action',
            a->>'identity_type', a->>'identity_id', a->>'secret_path', a->>'source_ip', a->>'user_agent',
            (a->>'success')::boolean, (a->>'duration_ms')::integer, a->>'request_id', p_extra,
            h.lane, h.seq, h.prev_hash, h.hash);
END
$$;

-- The hook where events of a secret change or access join the transaction that makes the
-- change (an outbox row, issue 11). `events` is a JSON array the caller built; this default does
-- nothing. A later migration replaces it (CREATE OR REPLACE, same signature) to insert the rows.
CREATE OR REPLACE FUNCTION sv_secret_events(p_secret_id bigint, p_version integer, p_events jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RETURN;
END
$$;

-- Audited reads of one worker, gathered: for each item in order, the secret row (with the
-- requested or current version) and, when the value is readable, its success entry appended to
-- the chain with extra_data.version set to the version read. The canonical bytes arrive as the
-- halves around that version number (audit/writer.py read_and_record). Items with no row at the
-- path return nothing; the caller records their failure entries itself.
CREATE OR REPLACE FUNCTION sv_read_batch(p_items jsonb)
RETURNS TABLE (item integer, id bigint, secret_type text, current_version integer, metadata jsonb,
               created_at timestamptz, updated_at timestamptz, expires_at timestamptz,
               rotation_policy_id text, max_versions integer, last_accessed_at timestamptz,
               deleted_at timestamptz, recoverable_until timestamptz, v_version integer,
               sealed_data bytea, destroyed_at timestamptz, v_created_at timestamptz,
               checked_at timestamptz, audited boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    it record;
    r record;
    v_ok boolean;
BEGIN
    FOR it IN SELECT e.doc, e.n FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(doc, n) LOOP
        IF it.doc->>'tenant' IS NOT NULL THEN
            SELECT s.id, s.secret_type, s.current_version, s.metadata, s.created_at, s.updated_at,
                   s.expires_at, s.rotation_policy_id, s.max_versions, s.last_accessed_at, s.deleted_at,
                   s.recoverable_until, v.version AS v_version, v.sealed_data, v.destroyed_at,
                   v.created_at AS v_created_at
              INTO r
              FROM secrets s
              LEFT JOIN secret_versions v ON v.secret_id = s.id
                   AND v.version = COALESCE((it.doc->>'version')::integer, s.current_version)
             WHERE s.tenant_id = it.doc->>'tenant' AND s.path = it.doc->>'path';
        ELSE
            SELECT s.id, s.secret_type, s.current_version, s.metadata, s.created_at, s.updated_at,
                   s.expires_at, s.rotation_policy_id, s.max_versions, s.last_accessed_at, s.deleted_at,
                   s.recoverable_until, v.version AS v_version, v.sealed_data, v.destroyed_at,
                   v.created_at AS v_created_at
              INTO r
              FROM secrets s
              LEFT JOIN secret_versions v ON v.secret_id = s.id
                   AND v.version = COALESCE((it.doc->>'version')::integer, s.current_version)
             WHERE s.tenant_id IS NULL AND s.partner_id = it.doc->>'partner' AND s.path = it.doc->>'path';
        END IF;
        CONTINUE WHEN NOT FOUND;
        v_ok := r.deleted_at IS NULL AND (r.expires_at IS NULL OR r.expires_at > now())
                AND r.v_version IS NOT NULL AND r.sealed_data IS NOT NULL;
        IF v_ok THEN
            PERFORM sv_audit_append(
                convert_to((it.doc->'audit'->>'canon_head') || r.v_version::text || (it.doc->'audit'->>'canon_tail'), 'UTF8'),
                it.doc->'audit', (it.doc->'audit'->'extra_data') || jsonb_build_object('version', r.v_version));
            IF jsonb_typeof(it.doc->'events') = 'array' THEN
                PERFORM sv_secret_events(r.id, r.v_version, it.doc->'events');
            END IF;
        END IF;
        RETURN QUERY SELECT it.n::integer, r.id, r.secret_type, r.current_version, r.metadata, r.created_at,
                            r.updated_at, r.expires_at, r.rotation_policy_id, r.max_versions,
                            r.last_accessed_at, r.deleted_at, r.recoverable_until, r.v_version,
                            r.sealed_data, r.destroyed_at, r.v_created_at, now(), v_ok;
    END LOOP;
END
$$;

-- One write in one statement: lock (or create) the secret row, check that its current version is
-- the one the caller sealed the new version for, insert the version, prune beyond max_versions,
-- move the current version, append the audit entry (extra_data.pruned_versions filled in here:
-- the canonical bytes arrive as the halves around it) and the change events, all in the
-- statement's own transaction; the row comes back with written = true. A version that moved on
-- writes nothing: the row comes back as it is with written = false (no row: the path is free
-- again), and the caller reseals for its current version. Anything unusual (a deleted row, a CAS
-- or rotation-policy check, a concurrent creator) raises SQLSTATE SVW01, which rolls everything
-- back, and the caller takes the general path.
CREATE OR REPLACE FUNCTION sv_write_version(p jsonb, p_sealed bytea)
RETURNS TABLE (written boolean, id bigint, secret_type text, current_version integer, metadata jsonb,
               created_at timestamptz, updated_at timestamptz, expires_at timestamptz,
               rotation_policy_id text, max_versions integer, last_accessed_at timestamptz,
               deleted_at timestamptz, recoverable_until timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r secrets;
    v_version integer;
    v_maxv integer;
    v_pruned integer;
BEGIN
    IF p->>'tenant' IS NOT NULL THEN
        SELECT * INTO r FROM secrets s WHERE s.tenant_id = p->>'tenant' AND s.path = p->>'path' FOR UPDATE;
    ELSE
        SELECT * INTO r FROM secrets s WHERE s.tenant_id IS NULL AND s.partner_id = p->>'partner'
                                         AND s.path = p->>'path' FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        IF (p->>'expected')::integer <> 0 THEN
            RETURN;                -- deleted for good meanwhile: the caller reseals as version 1
        END IF;
        IF p->>'tenant' IS NOT NULL THEN
            INSERT INTO secrets (partner_id, tenant_id, path, secret_type, max_versions, created_by, updated_by)
            VALUES (p->>'partner', p->>'tenant', p->>'path', p->>'create_type', (p->>'default_maxv')::integer,
                    p->>'actor', p->>'actor')
            ON CONFLICT (tenant_id, path) WHERE tenant_id IS NOT NULL DO NOTHING RETURNING * INTO r;
        ELSE
            INSERT INTO secrets (partner_id, tenant_id, path, secret_type, max_versions, created_by, updated_by)
            VALUES (p->>'partner', NULL, p->>'path', p->>'create_type', (p->>'default_maxv')::integer,
                    p->>'actor', p->>'actor')
            ON CONFLICT (partner_id, path) WHERE tenant_id IS NULL DO NOTHING RETURNING * INTO r;
        END IF;
        IF NOT FOUND THEN     -- a concurrent creator won: its version is not ours to guess
            RAISE EXCEPTION USING ERRCODE = 'SVW01', MESSAGE = '-1';
        END IF;
    END IF;
    -- a rotation or secret policy on the secret: the lifecycle hook (issue 11) has more to do
    IF r.deleted_at IS NOT NULL
       OR (p->>'cas' IS NOT NULL AND (p->>'cas')::integer <> r.current_version)
       OR (p->>'rotation' IS NOT NULL AND (p->>'rotation') IS DISTINCT FROM r.rotation_policy_id)
       OR r.rotation_policy_id IS NOT NULL OR r.secret_policy_id IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'SVW01', MESSAGE = '-1';
    END IF;
    IF r.current_version <> (p->>'expected')::integer THEN
        RETURN QUERY SELECT false, r.id, r.secret_type, r.current_version, r.metadata, r.created_at,
                            r.updated_at, r.expires_at, r.rotation_policy_id, r.max_versions,
                            r.last_accessed_at, r.deleted_at, r.recoverable_until;
        RETURN;                    -- moved on: nothing written
    END IF;
    v_version := r.current_version + 1;
    v_maxv := COALESCE((p->>'maxv')::integer, r.max_versions);
    INSERT INTO secret_versions (secret_id, version, partner_id, tenant_id, sealed_data, size_bytes, created_by)
    VALUES (r.id, v_version, r.partner_id, r.tenant_id, p_sealed, (p->>'size')::integer, p->>'actor');
    DELETE FROM secret_versions WHERE secret_id = r.id AND version <= v_version - v_maxv;
    GET DIAGNOSTICS v_pruned = ROW_COUNT;
    UPDATE secrets s
       SET current_version = v_version,
           secret_type = COALESCE(p->>'type', CASE WHEN r.current_version = 0 THEN p->>'create_type' ELSE r.secret_type END),
           metadata = COALESCE(p->'metadata', r.metadata),
           max_versions = v_maxv,
           expires_at = (p->>'expires_at')::timestamptz,
           rotation_policy_id = COALESCE(p->>'rotation', r.rotation_policy_id),
           updated_at = now(),
           updated_by = p->>'actor'
     WHERE s.id = r.id
     RETURNING * INTO r;
    PERFORM sv_audit_append(
        convert_to((p->'audit'->>'canon_head') || v_pruned::text || (p->'audit'->>'canon_tail'), 'UTF8'),
        p->'audit', (p->'audit'->'extra_data') || jsonb_build_object('pruned_versions', v_pruned));
    IF jsonb_typeof(p->'events') = 'array' THEN
        PERFORM sv_secret_events(r.id, v_version, p->'events');
    END IF;
    RETURN QUERY SELECT true, r.id, r.secret_type, r.current_version, r.metadata, r.created_at,
                        r.updated_at, r.expires_at, r.rotation_policy_id, r.max_versions,
                        r.last_accessed_at, r.deleted_at, r.recoverable_until;
END
$$;
