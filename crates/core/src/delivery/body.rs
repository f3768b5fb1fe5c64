//! The request body the API receives, and the excerpt of its answer that is kept.

use crate::delivery::BodyShape;
use crate::message::RecordBatchRef;

/// The body of the POST for a batch whose records are the JSON array `records` (taken as is,
/// from the message or the claim-check object, without parsing it into values again).
pub fn request_body(shape: BodyShape, batch: &BatchHeader<'_>, records: &[u8]) -> Vec<u8> {
    match shape {
        BodyShape::Array => records.to_vec(),
        BodyShape::Envelope => {
            let head = serde_json::json!({
                "file_id": batch.file_id,
                "dataset": batch.dataset,
                "batch_id": batch.batch_id,
                "seq": batch.seq,
                "total": batch.total,
            })
            .to_string();
            let mut body = Vec::with_capacity(head.len() + records.len() + 12);
            body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            body.extend_from_slice(b",\"records\":");
            body.extend_from_slice(records);
            body.push(b'}');
            body
        }
    }
}

/// What identifies a batch to the API (the message without its records).
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader<'a> {
    pub file_id: uuid::Uuid,
    pub dataset: &'a str,
    pub batch_id: &'a str,
    pub seq: u32,
    pub total: u32,
}

impl RecordBatchRef<'_> {
    /// What identifies this batch to the API.
    pub fn header(&self) -> BatchHeader<'_> {
        BatchHeader {
            file_id: self.file_id,
            dataset: &self.dataset,
            batch_id: &self.batch_id,
            seq: self.seq,
            total: self.total,
        }
    }
}

/// The most of a response body kept in `api_call.response_excerpt`.
pub const EXCERPT_BYTES: usize = 512;

/// The start of a response body as one line of text: at most [`EXCERPT_BYTES`] bytes, cut on
/// a character boundary, invalid UTF-8 replaced, control characters turned into spaces.
pub fn excerpt(body: &[u8]) -> String {
    let mut end = body.len().min(EXCERPT_BYTES);
    // A character cut in two by the cap is dropped rather than shown as garbage.
    if let Err(e) = std::str::from_utf8(&body[..end]) {
        if e.error_len().is_none() && end < body.len() {
            end = e.valid_up_to();
        }
    }
    let text: String = String::from_utf8_lossy(&body[..end])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BatchHeader<'static> {
        BatchHeader {
            file_id: uuid::Uuid::from_u128(7),
            dataset: "orders",
            batch_id: "00000000-0000-0000-0000-000000000007-000002",
            seq: 2,
            total: 3,
        }
    }

    #[test]
    fn an_array_body_is_the_records_untouched() {
        let records = br#"[{"a":1},{"a":"\u00e9"}]"#;
        assert_eq!(
            request_body(BodyShape::Array, &header(), records),
            records.to_vec()
        );
    }

    #[test]
    fn an_envelope_wraps_the_records_with_the_batch_identity() {
        let records = br#"[{"a":1}]"#;
        let body = request_body(BodyShape::Envelope, &header(), records);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["batch_id"], header().batch_id);
        assert_eq!(json["seq"], 2);
        assert_eq!(json["total"], 3);
        assert_eq!(json["dataset"], "orders");
        assert_eq!(json["file_id"], "00000000-0000-0000-0000-000000000007");
        assert_eq!(json["records"], serde_json::json!([{"a": 1}]));
    }

    #[test]
    fn excerpts_are_capped_single_lines() {
        assert_eq!(
            excerpt(b"{\"error\":\n\"bad\"}\r\n"),
            "{\"error\": \"bad\"}"
        );
        let long = format!("a{}", "é".repeat(400));
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= EXCERPT_BYTES);
        assert_eq!(cut.len(), EXCERPT_BYTES - 1, "the split é is dropped");
        assert!(cut.chars().skip(1).all(|c| c == 'é'));
        assert_eq!(excerpt(&[0xff, b'o', b'k']), "\u{fffd}ok");
    }
}
