//! Presigned links to a file's objects (the original upload, the clean CSV, the reports), when
//! the dashboard may sign for the buckets (`SLUICE_CLEAN_BUCKET` set, and credentials). A link
//! is signed when the page is shown, here, without a call to S3; it works for
//! [`LINK_LIFE`] and for no longer than the credentials that signed it.

use std::time::Duration;

use serde::Serialize;
use sluice_aws::{ObjectStore, Presign};
use sluice_core::layout;

use crate::queries::FileDetail;

/// How long a link works.
pub const LINK_LIFE: Duration = Duration::from_secs(15 * 60);

/// What the dashboard signs links with.
pub struct Links {
    pub objects: ObjectStore,
    pub clean_bucket: String,
}

/// One of a file's objects, and a link to it (or why there is none).
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub label: &'static str,
    pub object: String,
    pub url: Option<String>,
    pub no_link: Option<String>,
}

/// Why an upload the sanitizer has not accepted gets no link.
const UNACCEPTED: &str = "not downloadable: until the sanitizer accepts an upload, the \
    quarantine bucket lets only the sanitizer and the listener read it (its report says why \
    it was not accepted)";

impl Links {
    /// From `SLUICE_CLEAN_BUCKET`; `None` when it is not set.
    pub fn from_env(objects: ObjectStore) -> Option<Self> {
        let clean_bucket = std::env::var("SLUICE_CLEAN_BUCKET")
            .ok()
            .filter(|b| !b.trim().is_empty())?;
        Some(Links {
            objects,
            clean_bucket,
        })
    }

    /// The objects file `f` has by now: its upload; its clean CSV once sanitized; each
    /// report once its stage has an outcome.
    pub async fn for_file(&self, f: &FileDetail) -> Vec<Link> {
        let clean = &self.clean_bucket;
        let accepted = f
            .sanitize_summary()
            .is_some_and(|s| s.verdict == sluice_core::Verdict::Accepted);
        let mut objects = vec![(
            "original upload",
            f.source_bucket.clone(),
            f.source_key.clone(),
        )];
        if let Some(key) = &f.clean_key {
            objects.push(("clean CSV", clean.clone(), key.clone()));
        }
        if f.sanitize.is_some() {
            objects.push((
                "sanitize report",
                clean.clone(),
                layout::sanitize_report_key(f.id),
            ));
        }
        if f.transform.is_some() {
            objects.push((
                "transform report",
                clean.clone(),
                layout::transform_report_key(f.id),
            ));
        }
        let mut links = Vec::with_capacity(objects.len());
        for (label, bucket, key) in objects {
            let object = format!("s3://{bucket}/{key}");
            // The bucket policy would refuse the link's GET: say so rather than link to a 403.
            if label == "original upload" && !accepted {
                links.push(Link {
                    label,
                    object,
                    url: None,
                    no_link: Some(UNACCEPTED.into()),
                });
                continue;
            }
            let signed = self
                .objects
                .presigned(Presign::Get, &bucket, &key, LINK_LIFE)
                .await;
            links.push(Link {
                label,
                object,
                no_link: signed.as_ref().err().map(ToString::to_string),
                url: signed.ok(),
            });
        }
        links
    }
}
