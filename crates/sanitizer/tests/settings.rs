//! The sanitizer refuses to start on a bad environment, naming the variable.
//! (One test in its own binary: it changes the process environment.)

use sluice_sanitizer::Settings;

#[test]
fn settings_name_the_missing_or_bad_variable() {
    let full = [
        ("SLUICE_CONFIG", "pipelines.toml"),
        ("SLUICE_CLEAN_BUCKET", "clean"),
        (
            "SLUICE_TRANSFORM_QUEUE_URL",
            "http://127.0.0.1:1/123456789012/t",
        ),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
    ];
    let set_all = || {
        for (k, v) in full {
            std::env::set_var(k, v);
        }
        std::env::remove_var("DATABASE_SECRET_ARN");
        std::env::remove_var("SLUICE_MIGRATE_ON_START");
    };
    set_all();
    assert!(Settings::from_env().is_ok());
    for (name, _) in &full[..3] {
        set_all();
        std::env::remove_var(name);
        let err = Settings::from_env().unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
    set_all();
    std::env::remove_var("DATABASE_URL");
    let err = Settings::from_env().unwrap_err().to_string();
    assert!(err.contains("DATABASE_URL or DATABASE_SECRET_ARN"), "{err}");
    set_all();
    std::env::set_var("SLUICE_MIGRATE_ON_START", "maybe");
    let err = Settings::from_env().unwrap_err().to_string();
    assert!(err.contains("SLUICE_MIGRATE_ON_START"), "{err}");
}
