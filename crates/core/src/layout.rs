//! Where each object of a file lives in the buckets: the key layout, written once. A stage
//! reads and writes only the objects this layout gives the file id it works on, whatever a
//! message names ([`check_clean_file`], [`check_claim_check`]): a message is not a capability.

use uuid::Uuid;

/// The clean CSV of file `id` of `dataset`, in the clean bucket.
pub fn clean_key(dataset: &str, id: Uuid) -> String {
    format!("clean/{dataset}/{id}.csv")
}

/// The sanitize report of file `id`, in the clean bucket.
pub fn sanitize_report_key(id: Uuid) -> String {
    format!("reports/{id}/sanitize.json")
}

/// The errors file of file `id` (its rejected rows with their cells), in the clean bucket.
pub fn errors_key(id: Uuid) -> String {
    format!("reports/{id}/errors.csv")
}

/// The transform report of file `id`, in the clean bucket.
pub fn transform_report_key(id: Uuid) -> String {
    format!("reports/{id}/transform.json")
}

/// The claim-checked records of batch `seq` of file `id`, in the clean bucket.
pub fn claim_check_key(id: Uuid, seq: u32) -> String {
    format!("batches/{id}/{seq:06}.json")
}

/// Refuses a "file sanitized" message's object unless it is file `id`'s clean CSV in the
/// configured clean bucket.
pub fn check_clean_file(
    bucket: &str,
    key: &str,
    clean_bucket: &str,
    dataset: &str,
    id: Uuid,
) -> Result<(), String> {
    let expected = clean_key(dataset, id);
    refuse_other(bucket, key, clean_bucket, &expected, "clean file")
}

/// Refuses a "record batch" message's claim check unless it is batch `seq` of file `id` in the
/// configured clean bucket.
pub fn check_claim_check(
    bucket: &str,
    key: &str,
    clean_bucket: &str,
    id: Uuid,
    seq: u32,
) -> Result<(), String> {
    let expected = claim_check_key(id, seq);
    refuse_other(bucket, key, clean_bucket, &expected, "claim check")
}

fn refuse_other(
    bucket: &str,
    key: &str,
    clean_bucket: &str,
    expected: &str,
    what: &str,
) -> Result<(), String> {
    if bucket == clean_bucket && key == expected {
        return Ok(());
    }
    Err(format!(
        "the message names s3://{bucket}/{key} as its {what}, but this file's {what} can only \
         be s3://{clean_bucket}/{expected}: refused (a message does not choose what a stage \
         reads)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_own_objects_are_accepted() {
        let id = Uuid::from_u128(7);
        let key = clean_key("orders", id);
        assert_eq!(key, "clean/orders/00000000-0000-0000-0000-000000000007.csv");
        assert!(check_clean_file("clean-b", &key, "clean-b", "orders", id).is_ok());
        for (bucket, key) in [
            ("other-b", key.as_str()),
            (
                "clean-b",
                "clean/orders/00000000-0000-0000-0000-000000000008.csv",
            ),
            (
                "clean-b",
                "clean/returns/00000000-0000-0000-0000-000000000007.csv",
            ),
            ("clean-b", "incoming/orders/secret.csv"),
            ("clean-b", "clean/orders/../../incoming/x.csv"),
        ] {
            let err = check_clean_file(bucket, key, "clean-b", "orders", id).unwrap_err();
            assert!(err.contains("refused") && err.contains(key), "{err}");
        }
        let batch = claim_check_key(id, 3);
        assert!(check_claim_check("clean-b", &batch, "clean-b", id, 3).is_ok());
        assert!(check_claim_check("clean-b", &batch, "clean-b", id, 4).is_err());
        assert!(check_claim_check("quarantine-b", &batch, "clean-b", id, 3).is_err());
    }
}
