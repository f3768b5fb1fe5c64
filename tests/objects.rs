//! The S3 adapter against moto server: ranged reads with several GETs in flight and
//! multipart writes with several parts in flight give back exactly the bytes, in order.

use sluice_aws::s3::PART_BYTES;
use sluice_aws::ObjectStore;
use sluice_e2e::World;
use tokio::io::AsyncReadExt;

/// Bytes where every position is told apart: a misplaced or repeated range shows.
fn numbered(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 16);
    let mut i = 0u64;
    while body.len() < len {
        body.extend_from_slice(format!("{i:015}\n").as_bytes());
        i += 1;
    }
    body.truncate(len);
    body
}

async fn read_all(store: &ObjectStore, bucket: &str, key: &str) -> (Vec<u8>, i64) {
    let (mut reader, meta) = store.open(bucket, key, None).await.unwrap();
    let mut got = Vec::new();
    reader.read_to_end(&mut got).await.unwrap();
    (got, meta.size)
}

#[tokio::test]
async fn an_object_read_with_one_two_or_four_ranges_in_flight_comes_back_whole_and_in_order() {
    let world = World::new().await;
    // Not a whole number of ranges, and sizes at the edges of one range.
    let sizes = [
        0,
        1,
        4 * 1024 * 1024,
        4 * 1024 * 1024 + 1,
        17 * 1024 * 1024 + 12_345,
    ];
    for size in sizes {
        let body = numbered(size);
        let key = format!("objects/{size}.txt");
        world.put(&key, body.clone()).await;
        for parts in [1, 2, 4] {
            let store = ObjectStore::new(world.clients.s3.clone()).with_ranges_in_flight(parts);
            let (got, meta_size) = read_all(&store, &world.quarantine, &key).await;
            assert_eq!(
                meta_size, size as i64,
                "size of {size} bytes, {parts} in flight"
            );
            assert!(
                got == body,
                "{size} bytes read with {parts} in flight differ"
            );
        }
    }
    world.clean_up().await;
}

#[tokio::test]
async fn a_missing_object_is_not_found_whatever_the_parts_in_flight() {
    let world = World::new().await;
    for parts in [1, 4] {
        let store = ObjectStore::new(world.clients.s3.clone()).with_ranges_in_flight(parts);
        let err = store
            .open(&world.quarantine, "no/such.csv", None)
            .await
            .err()
            .expect("a missing key is an error");
        assert!(
            matches!(err, sluice_aws::AwsError::NotFound { .. }),
            "{parts} in flight: {err}"
        );
    }
    world.clean_up().await;
}

#[tokio::test]
async fn an_object_written_with_four_parts_in_flight_reads_back_in_order() {
    let world = World::new().await;
    let body = numbered(5 * PART_BYTES + 777);
    let store = ObjectStore::new(world.clients.s3.clone()).with_parts_in_flight(4);
    let mut upload = store.upload(&world.clean, "objects/parts.txt", "text/plain");
    // Odd-sized writes, so parts fill across write boundaries.
    for chunk in body.chunks(1_000_003) {
        upload.write(chunk).await.unwrap();
    }
    assert_eq!(upload.finish().await.unwrap(), body.len() as u64);
    let got = world.get(&world.clean, "objects/parts.txt").await.unwrap();
    assert!(got == body, "the object differs from what was written");
    world.clean_up().await;
}

#[tokio::test]
async fn an_object_replaced_while_it_is_read_in_ranges_fails_instead_of_mixing_two_files() {
    let world = World::new().await;
    let key = "objects/replaced.txt";
    // Ten ranges: with two in flight, most are asked for after the object changes.
    let size = 40 * 1024 * 1024;
    world.put(key, numbered(size)).await;
    let store = ObjectStore::new(world.clients.s3.clone()).with_ranges_in_flight(2);
    let (mut reader, _) = store.open(&world.quarantine, key, None).await.unwrap();
    let mut first = vec![0; 1024];
    reader.read_exact(&mut first).await.unwrap();
    world.put(key, vec![b'x'; size]).await;
    let mut rest = Vec::new();
    let err = reader
        .read_to_end(&mut rest)
        .await
        .expect_err("a read across the change must fail");
    assert!(err.to_string().contains("GetObject"), "{err}");
    world.clean_up().await;
}
