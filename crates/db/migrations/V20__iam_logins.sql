-- On RDS, each function logs in as its own role with an IAM token (SLUICE_DB_IAM_USER): the
-- roles of V19 (and the dashboard's) become logins that authenticate through rds_iam. Where
-- there is no rds_iam (a PostgreSQL that is not RDS), nothing changes: the functions log in
-- as they are configured to. Roles belong to the cluster: the first schema's migration does
-- it, and one running at the same moment in another schema may lose the race to change the
-- same role, which is then done already.
DO $$
DECLARE
    role text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
        RETURN;
    END IF;
    FOREACH role IN ARRAY ARRAY['sluice_sanitizer', 'sluice_transformer', 'sluice_forwarder',
                                'sluice_listener', 'sluice_dashboard'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role);
        BEGIN
            IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = role) THEN
                EXECUTE format('ALTER ROLE %I LOGIN', role);
            END IF;
            IF NOT pg_has_role(role, 'rds_iam', 'MEMBER') THEN
                EXECUTE format('GRANT rds_iam TO %I', role);
            END IF;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot make % an IAM login (%): an administrator can '
                              '(ALTER ROLE % LOGIN; GRANT rds_iam TO %)', role, SQLERRM, role, role;
            WHEN OTHERS THEN
                RAISE NOTICE 'making % an IAM login: % (another migration at the same moment?)',
                             role, SQLERRM;
        END;
    END LOOP;
END
$$;
