-- Issue 10: a write's events in a tenant nobody listens to are stored as already dispatched.
--
-- Quiet writes (0071) still left every outbox row to the dispatchers' one-second sweep, which
-- locks it, finds no webhook or subscription in its tenant and marks it dispatched: an UPDATE of
-- every row (not a HOT one: dispatched_at decides the partial index events_undispatched), and
-- Python work in every worker. Under a burst of writes the sweep fell behind (500 rows a pass)
-- and the backlog was worked off during the next workload. Now the statement that inserts the
-- rows looks at the tenant itself: with no enabled webhook and no active subscription visible to
-- it, the rows go in with dispatched_at set, so no sweep touches them; the retention job deletes
-- them like any dispatched event. A consumer committed while the write's statement runs does not
-- receive that write's events (the write is ordered before it), as a webhook created after a
-- write never receives it. The columns are 0105's and 0071's; keep the three lists in step.
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
    INSERT INTO events (id, tenant_id, partner_id, event_type, path, body, dispatched_at)
    SELECT e->>'event_id', e->>'tenant_id', e->>'partner_id', e->>'event_type', e->>'path', e::text,
           CASE WHEN EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant_id = e->>'tenant_id' AND w.enabled)
                  OR EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = e->>'tenant_id' AND s.status = 'active')
                THEN NULL ELSE now() END
      FROM jsonb_array_elements(p_events) AS e;
END
$$;
