//! The labels table item: one per document, keyed by `uri`.
//!
//! Downstream apps read items with [`LabelRecord::from_item`], which takes a
//! [`serde_dynamo::Item`]; with serde_dynamo's `aws-sdk-dynamodb+1` feature
//! enabled in the app, an SDK item map converts into one with `.into()`:
//!
//! ```ignore
//! let out = dynamodb.get_item().table_name(t).key("uri", AttributeValue::S(uri)).send().await?;
//! let record = LabelRecord::from_item(out.item.unwrap_or_default())?;
//! ```
//!
//! "All invoices since yesterday" is a query on [`LABEL_INDEX`] with
//! `label = :l AND classified_at > :t`, `:t` formatted by [`format_timestamp`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The table's partition key attribute.
pub const PARTITION_KEY: &str = "uri";
/// The global secondary index: partition `label`, sort `classified_at`.
pub const LABEL_INDEX: &str = "label-index";

/// `s3://{bucket}/{key}` with the key as it is (decoded).
pub fn uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// The timestamp format of `classified_at` and `last_modified`: RFC 3339 UTC
/// with milliseconds, so strings sort in time order.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Where a job came from; stored in the record's `source` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// An S3 upload notification (direct, via SNS, or via EventBridge).
    S3Event,
    /// The producer's backfill over a prefix.
    Backfill,
    /// Keys enqueued by hand (`docsort-producer enqueue`).
    Manual,
}

impl Source {
    /// The stored string: `s3-event`, `backfill` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::S3Event => "s3-event",
            Source::Backfill => "backfill",
            Source::Manual => "manual",
        }
    }
}

/// Whether the document got a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `label` holds a taxonomy category.
    Labeled,
    /// `failure` and `detail` say why there is no label.
    Failed,
}

impl Status {
    /// `labeled` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Labeled => "labeled",
            Status::Failed => "failed",
        }
    }
}

/// What became of a document: the item's `status` with `label`, or with
/// `failure` and `detail`. A record is always exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// The model answered with a taxonomy category.
    Labeled {
        /// The category.
        label: String,
    },
    /// No label: why, as a code and one human sentence.
    Failed {
        /// The reason code.
        failure: FailureReason,
        /// One human sentence about the failure.
        detail: String,
    },
}

impl Outcome {
    /// A failure with its sentence.
    pub fn failed(failure: FailureReason, detail: impl Into<String>) -> Self {
        Outcome::Failed {
            failure,
            detail: detail.into(),
        }
    }

    /// `labeled` or `failed`.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Labeled { .. } => Status::Labeled,
            Outcome::Failed { .. } => Status::Failed,
        }
    }

    /// The category, when labeled.
    pub fn label(&self) -> Option<&str> {
        match self {
            Outcome::Labeled { label } => Some(label),
            Outcome::Failed { .. } => None,
        }
    }

    /// The reason code, when failed.
    pub fn failure(&self) -> Option<&FailureReason> {
        match self {
            Outcome::Labeled { .. } => None,
            Outcome::Failed { failure, .. } => Some(failure),
        }
    }

    /// The one-sentence explanation, when failed.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Labeled { .. } => None,
            Outcome::Failed { detail, .. } => Some(detail),
        }
    }
}

impl std::fmt::Display for Outcome {
    /// `invoice`, or `failed/no_text`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Labeled { label } => f.write_str(label),
            Outcome::Failed { failure, .. } => write!(f, "failed/{failure}"),
        }
    }
}

/// Why a document could not be labeled. Stored as its snake_case code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FailureReason {
    /// The object does not exist (any more).
    NotFound,
    /// The object is larger than the worker's size cap.
    TooLarge,
    /// The object is not a PDF.
    NotPdf,
    /// The PDF needs a password.
    Encrypted,
    /// The PDF has no text layer (scanned or image-only).
    NoText,
    /// The PDF cannot be parsed.
    Malformed,
    /// Extraction took longer than its time cap.
    Timeout,
    /// The model twice answered with something outside the taxonomy.
    UnparseableAnswer,
    /// The Bedrock guardrail intervened (its policy is in `detail`); no label.
    Blocked,
    /// A code written by a newer docsort.
    Other(String),
}

impl FailureReason {
    /// The stored code, e.g. `not_found`.
    pub fn as_str(&self) -> &str {
        match self {
            FailureReason::NotFound => "not_found",
            FailureReason::TooLarge => "too_large",
            FailureReason::NotPdf => "not_pdf",
            FailureReason::Encrypted => "encrypted",
            FailureReason::NoText => "no_text",
            FailureReason::Malformed => "malformed",
            FailureReason::Timeout => "timeout",
            FailureReason::UnparseableAnswer => "unparseable_answer",
            FailureReason::Blocked => "blocked",
            FailureReason::Other(code) => code,
        }
    }
}

impl From<String> for FailureReason {
    fn from(code: String) -> Self {
        match code.as_str() {
            "not_found" => FailureReason::NotFound,
            "too_large" => FailureReason::TooLarge,
            "not_pdf" => FailureReason::NotPdf,
            "encrypted" => FailureReason::Encrypted,
            "no_text" => FailureReason::NoText,
            "malformed" => FailureReason::Malformed,
            "timeout" => FailureReason::Timeout,
            "unparseable_answer" => FailureReason::UnparseableAnswer,
            "blocked" => FailureReason::Blocked,
            _ => FailureReason::Other(code),
        }
    }
}

impl From<FailureReason> for String {
    fn from(r: FailureReason) -> Self {
        r.as_str().to_owned()
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the text a model read came from (the record's `text_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// The PDF's own text layer.
    TextLayer,
    /// The first page rendered as an image, read by the model itself.
    PageImage,
    /// The first page rendered and read by OCR (Tesseract).
    Ocr,
    /// A value written by a newer docsort.
    #[serde(other)]
    Other,
}

impl TextSource {
    /// The stored value, e.g. `page_image`.
    pub fn as_str(self) -> &'static str {
        match self {
            TextSource::TextLayer => "text_layer",
            TextSource::PageImage => "page_image",
            TextSource::Ocr => "ocr",
            TextSource::Other => "other",
        }
    }
}

/// One labels table item. Optional attributes are absent from the item when `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRecord {
    /// Partition key: `s3://bucket/key`.
    pub uri: String,
    /// The object's bucket.
    pub bucket: String,
    /// The object's key, decoded.
    pub key: String,
    /// S3 version id, on versioned buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// ETag of the object that was classified (absent for `not_found`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Object size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The object's Last-Modified time; orders object versions (newer wins).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_timestamp"
    )]
    pub last_modified: Option<DateTime<Utc>>,
    /// `status` with `label`, or with `failure` and `detail`: one or the other,
    /// never both or neither.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The model or inference profile asked (absent when the model was not reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The label version: short hash of everything that can change an answer
    /// (system prompt, taxonomy, model id, text budget, the local model's reading).
    pub prompt_version: String,
    /// Input tokens billed, summed over the calls for this document.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens billed, summed over the calls for this document.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost of the model calls in USD, when the model's price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Pages in the document, when it could be parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
    /// Characters of text extraction produced (before the prompt's cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_chars: Option<u64>,
    /// What the model read: the text layer, the first page's image, or OCR
    /// text (absent when no model was asked, and on records written before
    /// docsort read scans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_source: Option<TextSource>,
    /// The Bedrock batch inference job (its ARN) that produced the label,
    /// when one did (`docsort-worker batch`); absent for on-demand calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_job: Option<String>,
    /// When this record was written (RFC 3339 UTC, milliseconds).
    #[serde(with = "timestamp")]
    pub classified_at: DateTime<Utc>,
    /// Where the job came from.
    pub source: Source,
    /// Deliveries of this document that reached the model.
    #[serde(default)]
    pub attempts: u32,
}

/// A record that is not a valid labels table item.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("labels table item is not a valid record: {0}")]
    Item(#[from] serde_dynamo::Error),
}

impl LabelRecord {
    /// A record of `outcome` for the object `bucket`/`key`, classified now
    /// under `prompt_version`; the caller fills in what else it knows.
    pub fn new(
        uri: String,
        bucket: String,
        key: String,
        prompt_version: String,
        source: Source,
        outcome: Outcome,
    ) -> Self {
        LabelRecord {
            uri,
            bucket,
            key,
            version_id: None,
            etag: None,
            size_bytes: None,
            last_modified: None,
            outcome,
            model_id: None,
            prompt_version,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
            pages: None,
            text_chars: None,
            text_source: None,
            batch_job: None,
            classified_at: chrono::Utc::now(),
            source,
            attempts: 0,
        }
    }

    /// `labeled` or `failed`.
    pub fn status(&self) -> Status {
        self.outcome.status()
    }

    /// The category, when labeled.
    pub fn label(&self) -> Option<&str> {
        self.outcome.label()
    }

    /// The DynamoDB item for this record.
    pub fn to_item(&self) -> Result<serde_dynamo::Item, RecordError> {
        Ok(serde_dynamo::to_item(self)?)
    }

    /// Reads a record from a DynamoDB item (see the module docs).
    pub fn from_item(item: impl Into<serde_dynamo::Item>) -> Result<Self, RecordError> {
        Ok(serde_dynamo::from_item(item.into())?)
    }
}

mod timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod opt_timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::timestamp::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::timestamp")] DateTime<Utc>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(t)| t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_dynamo::AttributeValue;

    fn sample() -> LabelRecord {
        LabelRecord {
            uri: uri("b", "a b.pdf"),
            bucket: "b".into(),
            key: "a b.pdf".into(),
            version_id: None,
            etag: Some("\"abc\"".into()),
            size_bytes: Some(1234),
            last_modified: Some("2026-11-24T08:00:00Z".parse().unwrap()),
            outcome: Outcome::Labeled {
                label: "invoice".into(),
            },
            model_id: Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".into()),
            prompt_version: "0123456789ab".into(),
            input_tokens: 812,
            output_tokens: 2,
            cost_usd: Some(0.000822),
            pages: Some(3),
            text_chars: Some(5000),
            text_source: Some(TextSource::PageImage),
            batch_job: None,
            classified_at: "2026-11-25T10:00:00.5Z".parse().unwrap(),
            source: Source::Backfill,
            attempts: 1,
        }
    }

    #[test]
    fn item_has_the_contract_types_and_roundtrips() {
        let record = sample();
        let item = record.to_item().unwrap();
        let map: std::collections::HashMap<String, AttributeValue> = item.clone().into();
        assert_eq!(map["uri"], AttributeValue::S("s3://b/a b.pdf".into()));
        assert_eq!(map["status"], AttributeValue::S("labeled".into()));
        assert_eq!(map["size_bytes"], AttributeValue::N("1234".into()));
        assert_eq!(
            map["classified_at"],
            AttributeValue::S("2026-11-25T10:00:00.500Z".into())
        );
        assert_eq!(
            map["last_modified"],
            AttributeValue::S("2026-11-24T08:00:00.000Z".into())
        );
        assert_eq!(map["source"], AttributeValue::S("backfill".into()));
        assert_eq!(map["label"], AttributeValue::S("invoice".into()));
        assert_eq!(map["text_source"], AttributeValue::S("page_image".into()));
        assert!(!map.contains_key("failure") && !map.contains_key("detail"));
        assert!(!map.contains_key("version_id"));
        assert_eq!(LabelRecord::from_item(item).unwrap(), record);
    }

    #[test]
    fn failed_record_roundtrips_and_unknown_codes_survive() {
        let mut record = sample();
        record.outcome = Outcome::failed(FailureReason::NoText, "The PDF has no text layer.");
        let item = record.to_item().unwrap();
        let map: std::collections::HashMap<String, AttributeValue> = item.clone().into();
        assert_eq!(map["status"], AttributeValue::S("failed".into()));
        assert_eq!(map["failure"], AttributeValue::S("no_text".into()));
        assert!(!map.contains_key("label"));
        assert_eq!(LabelRecord::from_item(item).unwrap(), record);
        assert_eq!(
            FailureReason::from("quota".to_string()),
            FailureReason::Other("quota".into())
        );
    }

    #[test]
    fn an_inconsistent_item_is_not_a_record() {
        // labeled without a label; failed without a reason
        let mut map: std::collections::HashMap<String, AttributeValue> =
            sample().to_item().unwrap().into();
        map.remove("label");
        assert!(LabelRecord::from_item(map.clone()).is_err());
        map.insert("status".into(), AttributeValue::S("failed".into()));
        map.insert("detail".into(), AttributeValue::S("Why.".into()));
        assert!(LabelRecord::from_item(map).is_err());
    }

    #[test]
    fn attributes_added_by_a_newer_docsort_are_ignored() {
        let mut map: std::collections::HashMap<String, AttributeValue> =
            sample().to_item().unwrap().into();
        map.insert("reviewed_by".into(), AttributeValue::S("ops".into()));
        map.insert("image_tokens".into(), AttributeValue::N("1600".into()));
        assert_eq!(LabelRecord::from_item(map.clone()).unwrap(), sample());
        // A text source this docsort does not know reads as `Other`.
        map.insert("text_source".into(), AttributeValue::S("vision_ocr".into()));
        let record = LabelRecord::from_item(map).unwrap();
        assert_eq!(record.text_source, Some(TextSource::Other));
    }

    #[test]
    fn reading_an_item_without_required_attributes_fails() {
        let mut map: std::collections::HashMap<String, AttributeValue> =
            sample().to_item().unwrap().into();
        map.remove("status");
        assert!(LabelRecord::from_item(map).is_err());
    }
}
