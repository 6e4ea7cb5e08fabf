-- Outbox rows built by the caller (issue 10's one-statement write path calls this inside its
-- statement; issue 11 owns the body). p_events: a JSON array of complete event envelopes
-- (scaivault.events.outbox.envelope); each becomes one `events` row, and the outbox channel is
-- notified on commit. CREATE OR REPLACE keeps the signature issue 10's migration declares.
CREATE OR REPLACE FUNCTION sv_secret_events(p_secret_id bigint, p_version integer, p_events jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
BEGIN
    IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' OR jsonb_array_length(p_events) = 0 THEN
        RETURN;
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(p_events) LOOP
        INSERT INTO events (id, tenant_id, partner_id, event_type, path, body)
        VALUES (e->>'event_id', e->>'tenant_id', e->>'partner_id', e->>'event_type', e->>'path', e::text);
    END LOOP;
    PERFORM pg_notify('scaivault_events', '');
END
$$;
