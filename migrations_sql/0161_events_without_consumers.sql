-- Issue 10: whether a write's events have a consumer is decided by the statement that inserts them.
--
-- 0071 let the caller say whether to NOTIFY, from a snapshot of consumer tenants up to 5 s old, and
-- still left every outbox row to the dispatchers' one-second sweep, which locks it, finds no webhook
-- or subscription in its tenant and marks it dispatched: an UPDATE of every row (not a HOT one:
-- dispatched_at decides the partial index events_undispatched), and Python work in every worker.
-- Under a burst of writes the sweep fell behind (500 rows a pass). Now the function looks at the
-- tenant itself: with an enabled webhook or an active subscription, the rows go in undispatched
-- with a NOTIFY (0105's sv_secret_events); with none, they go in already dispatched, no NOTIFY, no
-- sweep; the retention job deletes them like any dispatched event. A consumer committed while the
-- write's statement runs does not receive that write's events (the write is ordered before it), as
-- a webhook created after a write never receives it. `p_notify` (0071's caller hint) is no longer
-- read; the signature stays the one sv_write_version calls. Columns as 0105's; keep them in step.
CREATE OR REPLACE FUNCTION sv_secret_events(p_secret_id bigint, p_version integer, p_events jsonb,
                                            p_notify boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant text;
BEGIN
    IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' OR jsonb_array_length(p_events) = 0 THEN
        RETURN;
    END IF;
    v_tenant := p_events->0->>'tenant_id';         -- one write's events: one secret, one tenant
    IF EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant_id = v_tenant AND w.enabled)
       OR EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = v_tenant AND s.status = 'active') THEN
        PERFORM sv_secret_events(p_secret_id, p_version, p_events);
        RETURN;
    END IF;
    INSERT INTO events (id, tenant_id, partner_id, event_type, path, body, dispatched_at)
    SELECT e->>'event_id', e->>'tenant_id', e->>'partner_id', e->>'event_type', e->>'path', e::text, now()
      FROM jsonb_array_elements(p_events) AS e;
END
$$;
