-- Issue 10: a write whose events nobody listens for wakes no dispatcher.
--
-- A NOTIFY costs every writer twice: PostgreSQL serialises the commits of notifying transactions
-- (one lock held to the end of the commit, so concurrent writes cannot share a WAL flush), and every
-- process's listener wakes and runs a dispatch pass. The caller now says in the write's document
-- whether the tenant has a consumer at all (an enabled webhook or an active subscription, from a
-- snapshot at most 5 s old: scaivault.lifecycle.hooks.EVENT_CONSUMERS); `"notify": false` inserts
-- the outbox rows without the NOTIFY and the dispatchers' one-second sweep fans them out (nothing
-- is lost: the outbox rows are the queue). Absent, the write notifies as before.
--
-- The quiet insert writes the same columns as issue 11's sv_secret_events (0105), which stays the
-- one definition of a notifying insert; keep the two column lists in step.
CREATE OR REPLACE FUNCTION sv_secret_events(p_secret_id bigint, p_version integer, p_events jsonb,
                                            p_notify boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_notify THEN
        PERFORM sv_secret_events(p_secret_id, p_version, p_events);
        RETURN;
    END IF;
    IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' THEN
        RETURN;
    END IF;
    INSERT INTO events (id, tenant_id, partner_id, event_type, path, body)
    SELECT e->>'event_id', e->>'tenant_id', e->>'partner_id', e->>'event_type', e->>'path', e::text
      FROM jsonb_array_elements(p_events) AS e;
END
$$;

-- sv_write_version of 0070 with one line changed: the events call passes the document's "notify".
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
           expires_at = CASE WHEN p ? 'expires_at' THEN (p->>'expires_at')::timestamptz
                             WHEN r.expires_at > now() THEN r.expires_at END,
           rotation_policy_id = COALESCE(p->>'rotation', r.rotation_policy_id),
           updated_at = now(),
           updated_by = p->>'actor'
     WHERE s.id = r.id
     RETURNING * INTO r;
    PERFORM sv_audit_append(
        convert_to((p->'audit'->>'canon_head') || v_pruned::text || (p->'audit'->>'canon_tail'), 'UTF8'),
        p->'audit', (p->'audit'->'extra_data') || jsonb_build_object('pruned_versions', v_pruned));
    IF jsonb_typeof(p->'events') = 'array' THEN
        PERFORM sv_secret_events(r.id, v_version, p->'events', COALESCE((p->>'notify')::boolean, true));
    END IF;
    RETURN QUERY SELECT true, r.id, r.secret_type, r.current_version, r.metadata, r.created_at,
                        r.updated_at, r.expires_at, r.rotation_policy_id, r.max_versions,
                        r.last_accessed_at, r.deleted_at, r.recoverable_until;
END
$$;
