-- On RDS, each function logs in as its own role with an IAM token (SLUICE_DB_IAM_USER): the
-- roles of V19 (and the dashboard's) become logins that authenticate through rds_iam. Where
-- there is no rds_iam (a PostgreSQL that is not RDS), nothing changes: the functions log in
-- as they are configured to.
DO $$
DECLARE
    role text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
        RETURN;
    END IF;
    FOREACH role IN ARRAY ARRAY['sluice_sanitizer', 'sluice_transformer', 'sluice_forwarder',
                                'sluice_listener', 'sluice_dashboard'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
            BEGIN
                EXECUTE format('ALTER ROLE %I LOGIN', role);
                EXECUTE format('GRANT rds_iam TO %I', role);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot make % an IAM login (%): an administrator can '
                              '(ALTER ROLE % LOGIN; GRANT rds_iam TO %)', role, SQLERRM, role, role;
            END;
        END IF;
    END LOOP;
END
$$;
