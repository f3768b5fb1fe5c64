//! Each function's PostgreSQL role (migration V19) can run its own statements and is refused
//! what is not its job. The handler suites run each stage as its role (`World::store_as`);
//! here each role is refused a representative statement, and nothing may change the schema.

use sluice_e2e::{database_url, World};

/// A connection acting as `role` in the world's schema.
async fn as_role(world: &World, role: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = database_url().parse().unwrap();
    config.options(format!("-c search_path={} -c role={role}", world.schema));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The database's refusal of `sql`, as its message.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("allowed: {sql}"),
        Err(e) => e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

const A_FILE: &str = "INSERT INTO file_process (id, dataset, source_bucket, source_key, \
    source_etag, source_size, status) VALUES (gen_random_uuid(), 'orders', 'b', 'k', 'e', 1, \
    'received')";

#[tokio::test]
async fn each_function_is_refused_what_is_not_its_job() {
    let world = World::new().await;
    world.store().await;
    let sanitizer = as_role(&world, "sluice_sanitizer").await;
    let transformer = as_role(&world, "sluice_transformer").await;
    let forwarder = as_role(&world, "sluice_forwarder").await;
    let listener = as_role(&world, "sluice_listener").await;

    // Its own statements.
    sanitizer.batch_execute(A_FILE).await.unwrap();
    listener
        .batch_execute("SELECT count(*) FROM drop_object")
        .await
        .unwrap();
    forwarder
        .batch_execute("SELECT count(*) FROM api_call")
        .await
        .unwrap();
    transformer
        .batch_execute("SELECT count(*) FROM record_plan")
        .await
        .unwrap();

    for (who, client, sql, table) in [
        (
            "the sanitizer reads no API answer",
            &sanitizer,
            "SELECT * FROM api_call",
            "api_call",
        ),
        (
            "the sanitizer plans no record",
            &sanitizer,
            "SELECT * FROM record_plan",
            "record_plan",
        ),
        (
            "the transformer records no call",
            &transformer,
            "INSERT INTO api_call (file_id, batch_id, attempt) VALUES (gen_random_uuid(), 'b', 1)",
            "api_call",
        ),
        (
            "the forwarder registers no file",
            &forwarder,
            A_FILE,
            "file_process",
        ),
        (
            "the forwarder rewrites no history",
            &forwarder,
            "DELETE FROM file_event",
            "file_event",
        ),
        (
            "the listener records no call",
            &listener,
            "INSERT INTO api_call (file_id, batch_id, attempt) VALUES (gen_random_uuid(), 'b', 1)",
            "api_call",
        ),
        (
            "the listener erases no file",
            &listener,
            "DELETE FROM file_process",
            "file_process",
        ),
    ] {
        let said = refused(client, sql).await;
        assert_eq!(
            said,
            format!("permission denied for table {table}"),
            "{who}"
        );
    }
    for (role, client) in [
        ("sluice_sanitizer", &sanitizer),
        ("sluice_transformer", &transformer),
        ("sluice_forwarder", &forwarder),
        ("sluice_listener", &listener),
    ] {
        let said = refused(client, "CREATE TABLE mine (x int)").await;
        assert!(
            said.starts_with("permission denied for schema"),
            "{role}: {said}"
        );
        let said = refused(client, "TRUNCATE file_event").await;
        assert_eq!(said, "permission denied for table file_event", "{role}");
    }
}

/// On RDS (where the role rds_iam exists) the function roles become logins through IAM. The
/// test makes an `rds_iam` role of its own in the cluster (a NOLOGIN role, as on RDS) and
/// migrates a fresh schema.
#[tokio::test]
async fn on_rds_each_function_role_logs_in_through_iam() {
    let setup = World::new().await;
    let admin = as_role(&setup, "postgres").await;
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE rds_iam NOLOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        )
        .await
        .unwrap();
    let world = World::new().await;
    world.store().await;
    for role in [
        "sluice_sanitizer",
        "sluice_transformer",
        "sluice_forwarder",
        "sluice_listener",
        "sluice_dashboard",
    ] {
        let row = admin
            .query_one(
                "SELECT r.rolcanlogin, pg_has_role(r.oid, 'rds_iam', 'MEMBER') \
                 FROM pg_roles r WHERE r.rolname = $1",
                &[&role],
            )
            .await
            .unwrap();
        let (login, iam): (bool, bool) = (row.get(0), row.get(1));
        assert!(login && iam, "{role}: login {login}, rds_iam {iam}");
    }
}
