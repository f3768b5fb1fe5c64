//! `sluice presign` against moto server (scripts/test.sh starts it): a PUT URL used by a plain
//! HTTP client lands the file in quarantine under the dataset's prefix, and a GET URL reads
//! it back.

use std::path::Path;
use std::process::{Command, Output};

use sluice_aws::Clients;
use uuid::Uuid;

fn presign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("presign")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_put_from_a_plain_client_lands_in_quarantine_and_a_get_reads_it() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL must point at moto server: run the tests with scripts/test.sh"
    );
    let clients = Clients::from_env().await;
    let bucket = format!("sluice-presign-{}", Uuid::new_v4().simple());
    clients
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();

    let body = "Order ID,SKU\nA-1,S\n";
    let size = body.len().to_string();
    let put = presign(&[
        "--put",
        "orders export.csv",
        "--dataset",
        "orders",
        "--size",
        &size,
        "--bucket",
        &bucket,
        "--expires",
        "1h",
    ]);
    assert_eq!(put.status.code(), Some(0), "{put:?}");
    let text = String::from_utf8(put.stdout).unwrap();
    let mut lines = text.lines();
    let url = lines.next().unwrap().to_string();
    let key = lines
        .next()
        .and_then(|l| l.strip_prefix(&format!("key: s3://{bucket}/")))
        .unwrap()
        .to_string();
    assert!(
        key.starts_with("incoming/orders/") && key.ends_with("-orders export.csv"),
        "{key}"
    );
    // The URL is signed for the type and the exact size, and says so (S3 checks a signature
    // against the request's headers; moto does not, so the signed names are checked here).
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
        "{url}"
    );
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "signed for: Content-Type: text/csv, Content-Length: {size} (send exactly \
                 these; S3 refuses any other upload with this URL)"
            )
            .as_str()
        )
    );

    let http = reqwest::Client::new();
    let stored = http
        .put(&url)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(stored.status().is_success(), "{stored:?}");
    let object = clients
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], body.as_bytes());

    let get = presign(&[&key, "--bucket", &bucket, "--json"]);
    assert_eq!(get.status.code(), Some(0), "{get:?}");
    let get: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(
        (&get["method"], &get["key"]),
        (&"GET".into(), &key.as_str().into())
    );
    let url = get["url"].as_str().unwrap().to_string();
    let read = http.get(&url).send().await.unwrap();
    assert!(read.status().is_success());
    assert_eq!(read.text().await.unwrap(), body);

    // At most 7 days; a PUT needs a dataset, and one the config knows.
    assert_eq!(
        presign(&[&key, "--bucket", &bucket, "--expires", "8d"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        presign(&["--put", "x.csv", "--size", "9", "--bucket", &bucket])
            .status
            .code(),
        Some(2)
    );
    // A size, and no more than the dataset takes.
    assert_eq!(
        presign(&["--put", "x.csv", "--dataset", "orders", "--bucket", &bucket])
            .status
            .code(),
        Some(2)
    );
    let huge = presign(&[
        "--put",
        "x.csv",
        "--dataset",
        "orders",
        "--size",
        "99999999999999",
        "--bucket",
        &bucket,
    ]);
    assert_eq!(huge.status.code(), Some(2), "{huge:?}");
    assert!(String::from_utf8_lossy(&huge.stderr).contains("max_file_bytes"));
    let unknown = presign(&[
        "--put",
        "x.csv",
        "--dataset",
        "nope",
        "--size",
        "9",
        "--bucket",
        &bucket,
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));

    clients
        .s3
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    clients
        .s3
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
}
