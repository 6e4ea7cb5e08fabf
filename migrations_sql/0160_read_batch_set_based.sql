-- Group commit, set-based audit append (issue 10): a read batch's entries join their tenant's chain
-- in one pass. sv_read_batch of 0060 upserted the lane's head row and inserted one audit row per
-- read (an INSERT ... ON CONFLICT and a single-row INSERT each, ~60% of the statement's cost). Here
-- the head row of each tenant in the batch is locked once, the hashes are chained in variables
-- (the same sha256(prev || int2(lane) || int8(seq) || canonical bytes) as sv_audit_append), the
-- head is written once, and all entries go in with one INSERT. Items are taken in tenant order,
-- each tenant's in submission order; rows, results and hashes are exactly those of 0060's function.
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
    v_lane smallint := (pg_backend_pid() % 32749)::smallint;
    v_genesis bytea := decode(repeat('00', 32), 'hex');
    it record;
    r record;
    v_ok boolean;
    v_key text;
    v_cur text := NULL;
    v_seq bigint;
    v_hash bytea;
    a_doc jsonb[] := '{}';
    a_extra jsonb[] := '{}';
    a_seq bigint[] := '{}';
    a_prev bytea[] := '{}';
    a_hash bytea[] := '{}';
BEGIN
    FOR it IN SELECT e.doc, e.n FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(doc, n)
              ORDER BY COALESCE(e.doc->'audit'->>'tenant_id', ''), e.n LOOP
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
            v_key := COALESCE(it.doc->'audit'->>'tenant_id', '');
            IF v_cur IS DISTINCT FROM v_key THEN
                IF v_cur IS NOT NULL THEN
                    UPDATE audit_chain_heads SET seq = v_seq, prev_hash = a_prev[array_upper(a_prev, 1)], hash = v_hash
                     WHERE chain_key = v_cur AND lane = v_lane;
                END IF;
                v_cur := v_key;
                -- lock the lane's head (a new lane starts from the genesis hash at seq 0)
                INSERT INTO audit_chain_heads AS ch (chain_key, lane, seq, prev_hash, hash)
                VALUES (v_key, v_lane, 0, v_genesis, v_genesis)
                ON CONFLICT (chain_key, lane) DO UPDATE SET seq = ch.seq
                RETURNING ch.seq, ch.hash INTO v_seq, v_hash;
            END IF;
            a_prev := a_prev || v_hash;
            v_seq := v_seq + 1;
            v_hash := sha256(v_hash || int2send(v_lane) || int8send(v_seq) ||
                convert_to((it.doc->'audit'->>'canon_head') || r.v_version::text || (it.doc->'audit'->>'canon_tail'), 'UTF8'));
            a_doc := a_doc || (it.doc->'audit');
            a_extra := a_extra || ((it.doc->'audit'->'extra_data') || jsonb_build_object('version', r.v_version));
            a_seq := a_seq || v_seq;
            a_hash := a_hash || v_hash;
            IF jsonb_typeof(it.doc->'events') = 'array' THEN
                PERFORM sv_secret_events(r.id, r.v_version, it.doc->'events');
            END IF;
        END IF;
        RETURN QUERY SELECT it.n::integer, r.id, r.secret_type, r.current_version, r.metadata, r.created_at,
                            r.updated_at, r.expires_at, r.rotation_policy_id, r.max_versions,
                            r.last_accessed_at, r.deleted_at, r.recoverable_until, r.v_version,
                            r.sealed_data, r.destroyed_at, r.v_created_at, now(), v_ok;
    END LOOP;
    IF v_cur IS NOT NULL THEN
        UPDATE audit_chain_heads SET seq = v_seq, prev_hash = a_prev[array_upper(a_prev, 1)], hash = v_hash
         WHERE chain_key = v_cur AND lane = v_lane;
        INSERT INTO audit_log (id, ts, tenant_id, partner_id, action, identity_type, identity_id,
                               secret_path, source_ip, user_agent, success, duration_ms, request_id,
                               extra_data, chain_lane, chain_seq, prev_hash, entry_hash)
        SELECT a->>'id', (a->>'ts')::timestamptz, a->>'tenant_id', a->>'partner_id', a->>'action',
               a->>'identity_type', a->>'identity_id', a->>'secret_path', a->>'source_ip', a->>'user_agent',
               (a->>'success')::boolean, (a->>'duration_ms')::integer, a->>'request_id', x,
               v_lane, sq, pv, hh
          FROM unnest(a_doc, a_extra, a_seq, a_prev, a_hash) AS u(a, x, sq, pv, hh);
    END IF;
END
$$;
