-- One role per function, with the grants its statements need and nothing else: the sanitizer
-- cannot read api_call, the transformer cannot write it, the forwarder cannot register files,
-- and none of them can change the schema. Roles belong to the cluster (made once, by the
-- first schema's migration); grants belong to this schema. The migrating user is granted
-- each role, so it can take one on.
--
-- The triggers that keep other tables in step with file_process (the notification outbox, a
-- final file's record plan) run as their owner, so a function that moves a file needs no
-- grant on those tables; their search_path is pinned to this schema.

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['file_process_notify()', 'release_record_plan()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       fn, current_schema());
    END LOOP;
END
$$;

DO $$
DECLARE
    role text;
    schema text := current_schema();
BEGIN
    FOREACH role IN ARRAY ARRAY['sluice_sanitizer', 'sluice_transformer', 'sluice_forwarder',
                                'sluice_listener'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL; -- made by another schema's migration
            WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot create role % (%): an administrator can create it; '
                              'until then the functions use the login they are given',
                              role, SQLERRM;
                RETURN;
        END;
        BEGIN
            EXECUTE format('GRANT %I TO %I', role, current_user);
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'could not grant % to %: %', role, current_user, SQLERRM;
        END;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema, role);
        -- Every stage moves files along the table, writes their history and hands on their
        -- notifications.
        EXECUTE format('GRANT SELECT, UPDATE ON file_process TO %I', role);
        EXECUTE format('GRANT SELECT, INSERT ON file_event TO %I', role);
        EXECUTE format('GRANT USAGE ON SEQUENCE file_event_id_seq TO %I', role);
        EXECUTE format('GRANT SELECT ON status_transition TO %I', role);
        EXECUTE format('GRANT SELECT, UPDATE ON notification TO %I', role);
        EXECUTE format('GRANT SELECT ON batch_mark TO %I', role);
    END LOOP;

    -- Files are registered by the sanitizer (an upload) and the listener (a drop, an object
    -- whose events were lost) alone.
    GRANT INSERT ON file_process TO sluice_sanitizer, sluice_listener;

    -- The transformer: a file's plan, its batches' marks, and for a keyed dataset the record
    -- state it compares with and the plan it makes; the calls on record, read only.
    GRANT INSERT, UPDATE ON batch_mark TO sluice_transformer;
    GRANT SELECT ON api_call, batch_claim TO sluice_transformer;
    GRANT SELECT ON record_state TO sluice_transformer;
    GRANT SELECT, INSERT, UPDATE, DELETE ON record_seen, record_plan, delta_plan, delta_scope
        TO sluice_transformer;

    -- The forwarder: batch claims across the POST, every call, and what a delivered batch
    -- makes of the record state.
    GRANT SELECT, INSERT, UPDATE, DELETE ON batch_claim TO sluice_forwarder;
    GRANT SELECT, INSERT ON api_call TO sluice_forwarder;
    GRANT USAGE ON SEQUENCE api_call_id_seq TO sluice_forwarder;
    GRANT SELECT, INSERT, UPDATE, DELETE ON record_state TO sluice_forwarder;
    GRANT SELECT, UPDATE ON record_plan TO sluice_forwarder;
    GRANT SELECT ON delta_plan, delta_scope, record_seen TO sluice_forwarder;

    -- The listener: drops, reconciliation, re-drives of every stage, API-health roll-ups.
    GRANT SELECT, INSERT, UPDATE, DELETE ON drop_object, drop_cursor TO sluice_listener;
    GRANT SELECT ON api_call, batch_claim, record_state, record_plan, delta_plan, delta_scope,
        record_seen TO sluice_listener;
    GRANT SELECT, INSERT, UPDATE ON api_call_hour, api_call_rollup TO sluice_listener;
    GRANT EXECUTE ON FUNCTION sluice_rollup_api_calls() TO sluice_listener;
END
$$;
