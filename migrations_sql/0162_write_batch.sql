-- Group commit for writes (issue 10): concurrent one-statement writes of a process share one
-- statement and one commit. Each item is sv_write_version (0071) as it stands, in its own
-- subtransaction, so an item that needs the general path (SQLSTATE SVW01) is reported as such
-- without undoing the others. Any other error fails the statement; the caller then runs each item
-- alone, so every request gets the outcome it would have had by itself.
-- Items lock their secret rows in one global order (tenant, partner, path), so two batches never
-- wait on each other in a cycle. p_sealed[n] is item n's sealed value.
CREATE OR REPLACE FUNCTION sv_write_batch(p_items jsonb, p_sealed bytea[])
RETURNS TABLE (item integer, general boolean, written boolean, id bigint, secret_type text,
               current_version integer, metadata jsonb, created_at timestamptz, updated_at timestamptz,
               expires_at timestamptz, rotation_policy_id text, max_versions integer,
               last_accessed_at timestamptz, deleted_at timestamptz, recoverable_until timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    it record;
    r record;
BEGIN
    FOR it IN SELECT e.doc, e.n FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(doc, n)
              ORDER BY e.doc->>'tenant', e.doc->>'partner', e.doc->>'path', e.n LOOP
        BEGIN
            FOR r IN SELECT * FROM sv_write_version(it.doc, p_sealed[it.n]) LOOP
                RETURN QUERY SELECT it.n::integer, false, r.written, r.id, r.secret_type, r.current_version,
                                    r.metadata, r.created_at, r.updated_at, r.expires_at, r.rotation_policy_id,
                                    r.max_versions, r.last_accessed_at, r.deleted_at, r.recoverable_until;
            END LOOP;
        EXCEPTION WHEN SQLSTATE 'SVW01' THEN
            RETURN QUERY SELECT it.n::integer, true, false, NULL::bigint, NULL::text, NULL::integer, NULL::jsonb,
                                NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::integer,
                                NULL::timestamptz, NULL::timestamptz, NULL::timestamptz;
        END;
    END LOOP;
END
$$;
