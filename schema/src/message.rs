//! Queue bodies the worker accepts, and the job the producer sends.
//!
//! [`Delivery::parse`] turns one SQS message body into the jobs it carries, or
//! into "acknowledge and ignore" (`s3:TestEvent`, non-create events). A body that
//! is none of the known shapes is an error: the worker leaves it on the queue so
//! the redrive policy moves it to the DLQ.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sns::SnsMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::Source;

/// The current version of the docsort job message.
pub const JOB_VERSION: u32 = 1;

/// One object to classify. This is also the docsort job message, as JSON:
/// `{"v":1,"bucket":"b","key":"k","version_id":null,"etag":"...","source":"backfill"}`.
/// `key` is the object key itself (not URL-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Message format version; always [`JOB_VERSION`] when sent.
    pub v: u32,
    /// The bucket name.
    pub bucket: String,
    /// The object key, decoded.
    pub key: String,
    /// The object version to classify, on versioned buckets.
    #[serde(default)]
    pub version_id: Option<String>,
    /// The ETag seen when the job was created, if known (lets the worker skip
    /// objects it already labeled without downloading them).
    #[serde(default)]
    pub etag: Option<String>,
    /// Where the job came from.
    pub source: Source,
}

impl Job {
    /// A job for an object, in the current message version.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>, source: Source) -> Self {
        Job {
            v: JOB_VERSION,
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            etag: None,
            source,
        }
    }

    /// `s3://bucket/key`, the labels table's partition key.
    pub fn uri(&self) -> String {
        crate::record::uri(&self.bucket, &self.key)
    }

    /// The JSON body the producer sends.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a Job always serialises")
    }
}

/// What one queue message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Objects to classify (an S3 notification may carry several records).
    Jobs(Vec<Job>),
    /// Nothing to do; acknowledge and delete the message. The string says why.
    Ignore(String),
}

/// Why a body is not a message docsort understands. The message stays on the queue.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("body is JSON but none of: docsort job, S3 notification, SNS notification, EventBridge event")]
    UnknownShape,
    #[error("docsort job has unsupported version v={0} (this worker reads v={JOB_VERSION})")]
    UnsupportedVersion(u64),
    #[error("malformed {kind}: {source}")]
    Malformed {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{kind} record #{index} lacks {field}")]
    MissingField {
        kind: &'static str,
        index: usize,
        field: &'static str,
    },
    #[error("S3 notification key {key:?} is not valid URL-encoded UTF-8")]
    BadKeyEncoding { key: String },
}

impl Delivery {
    /// Parses one SQS message body.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let value: Value = serde_json::from_str(body).map_err(MessageError::NotJson)?;
        Self::from_value(value, 0)
    }

    fn from_value(value: Value, depth: u8) -> Result<Self, MessageError> {
        let obj = value.as_object().ok_or(MessageError::UnknownShape)?;
        if let Some(v) = obj.get("v") {
            return parse_job(v, value.clone());
        }
        if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            return Ok(Delivery::Ignore("s3:TestEvent".into()));
        }
        if obj.contains_key("Records") {
            return parse_s3_event(value);
        }
        if obj.get("Type").and_then(Value::as_str) == Some("Notification") && depth == 0 {
            let sns: SnsMessage =
                serde_json::from_value(value).map_err(|source| MessageError::Malformed {
                    kind: "SNS notification",
                    source,
                })?;
            let inner: Value = serde_json::from_str(&sns.message).map_err(MessageError::NotJson)?;
            return Self::from_value(inner, depth + 1);
        }
        if obj.contains_key("detail-type") && obj.contains_key("detail") {
            return parse_eventbridge(value);
        }
        Err(MessageError::UnknownShape)
    }
}

fn parse_job(v: &Value, value: Value) -> Result<Delivery, MessageError> {
    match v.as_u64() {
        Some(1) => {}
        Some(other) => return Err(MessageError::UnsupportedVersion(other)),
        None => return Err(MessageError::UnknownShape),
    }
    let job: Job = serde_json::from_value(value).map_err(|source| MessageError::Malformed {
        kind: "docsort job",
        source,
    })?;
    Ok(Delivery::Jobs(vec![job]))
}

fn parse_s3_event(mut value: Value) -> Result<Delivery, MessageError> {
    // Records from some senders (moto, replays) omit `userIdentity` and
    // `requestParameters`, which the event type requires though docsort reads
    // neither: supply empty ones rather than reject the event.
    if let Some(records) = value.get_mut("Records").and_then(Value::as_array_mut) {
        for record in records.iter_mut().filter_map(Value::as_object_mut) {
            for field in ["userIdentity", "requestParameters"] {
                record
                    .entry(field)
                    .or_insert_with(|| Value::Object(Default::default()));
            }
        }
    }
    let event: S3Event =
        serde_json::from_value(value).map_err(|source| MessageError::Malformed {
            kind: "S3 notification",
            source,
        })?;
    let mut jobs = Vec::new();
    let mut ignored = Vec::new();
    for (index, record) in event.records.into_iter().enumerate() {
        let name = record.event_name.unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            ignored.push(name);
            continue;
        }
        let kind = "S3 notification";
        let bucket = record.s3.bucket.name.ok_or(MessageError::MissingField {
            kind,
            index,
            field: "s3.bucket.name",
        })?;
        let raw = record.s3.object.key.ok_or(MessageError::MissingField {
            kind,
            index,
            field: "s3.object.key",
        })?;
        let key = decode_s3_event_key(&raw).ok_or(MessageError::BadKeyEncoding { key: raw })?;
        jobs.push(Job {
            v: JOB_VERSION,
            bucket,
            key,
            version_id: record.s3.object.version_id.filter(|v| !v.is_empty()),
            etag: record.s3.object.e_tag.filter(|e| !e.is_empty()),
            source: Source::S3Event,
        });
    }
    if jobs.is_empty() {
        return Ok(Delivery::Ignore(format!(
            "no ObjectCreated records (events: {})",
            ignored.join(", ")
        )));
    }
    Ok(Delivery::Jobs(jobs))
}

#[derive(Deserialize)]
struct ObjectDetail {
    bucket: BucketName,
    object: ObjectInfo,
}

#[derive(Deserialize)]
struct BucketName {
    name: String,
}

#[derive(Deserialize)]
struct ObjectInfo {
    key: String,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
}

fn parse_eventbridge(value: Value) -> Result<Delivery, MessageError> {
    let kind = "EventBridge event";
    let event: EventBridgeEvent<Value> =
        serde_json::from_value(value).map_err(|source| MessageError::Malformed { kind, source })?;
    if event.source != "aws.s3" || event.detail_type != "Object Created" {
        return Ok(Delivery::Ignore(format!(
            "EventBridge {} from {}",
            event.detail_type, event.source
        )));
    }
    let detail: ObjectDetail = serde_json::from_value(event.detail)
        .map_err(|source| MessageError::Malformed { kind, source })?;
    Ok(Delivery::Jobs(vec![Job {
        v: JOB_VERSION,
        bucket: detail.bucket.name,
        key: detail.object.key,
        version_id: detail.object.version_id.filter(|v| !v.is_empty()),
        etag: detail.object.etag.filter(|e| !e.is_empty()),
        source: Source::S3Event,
    }]))
}

/// Decodes a key from an S3 event notification: form encoding, so `+` is a
/// space and `%XX` are UTF-8 bytes. `None` when the bytes are not UTF-8.
pub fn decode_s3_event_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(body: &str) -> Vec<Job> {
        match Delivery::parse(body).unwrap() {
            Delivery::Jobs(j) => j,
            Delivery::Ignore(why) => panic!("ignored: {why}"),
        }
    }

    fn s3_record(event: &str, key: &str) -> String {
        format!(
            r#"{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-25T10:00:00.000Z","eventName":"{event}",
            "userIdentity":{{"principalId":"X"}},"requestParameters":{{"sourceIPAddress":"1.2.3.4"}},"responseElements":{{}},
            "s3":{{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{{"name":"docs","arn":"arn:aws:s3:::docs"}},
            "object":{{"key":"{key}","size":1024,"eTag":"abc","versionId":"v1","sequencer":"0055"}}}}}}"#
        )
    }

    #[test]
    fn docsort_job_roundtrips() {
        let mut job = Job::new("b", "dir/a b+c.pdf", Source::Backfill);
        job.etag = Some("\"e\"".into());
        assert_eq!(jobs(&job.to_body()), vec![job.clone()]);
        assert_eq!(job.uri(), "s3://b/dir/a b+c.pdf");
        let minimal = jobs(r#"{"v":1,"bucket":"b","key":"k","source":"manual"}"#);
        assert_eq!(minimal[0].version_id, None);
        assert_eq!(minimal[0].source, Source::Manual);
    }

    #[test]
    fn job_with_unknown_version_or_fields_missing_is_an_error() {
        assert!(matches!(
            Delivery::parse(r#"{"v":2,"bucket":"b","key":"k","source":"manual"}"#),
            Err(MessageError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            Delivery::parse(r#"{"v":1,"key":"k","source":"manual"}"#),
            Err(MessageError::Malformed { .. })
        ));
        assert!(matches!(
            Delivery::parse(r#"{"v":1,"bucket":"b","key":"k","source":"nightly"}"#),
            Err(MessageError::Malformed { .. })
        ));
    }

    #[test]
    fn s3_notification_keys_are_form_decoded() {
        let body = format!(
            r#"{{"Records":[{}]}}"#,
            s3_record(
                "ObjectCreated:Put",
                "inbox%2FQ3+report%2Bfinal+%C3%BCn%C3%AFc%C3%B6d%C3%A9+%E6%96%87%E6%9B%B8.pdf"
            )
        );
        let j = jobs(&body);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].bucket, "docs");
        assert_eq!(j[0].key, "inbox/Q3 report+final ünïcödé 文書.pdf");
        assert_eq!(j[0].version_id.as_deref(), Some("v1"));
        assert_eq!(j[0].etag.as_deref(), Some("abc"));
        assert_eq!(j[0].source, Source::S3Event);
    }

    #[test]
    fn s3_notification_without_optional_parts_parses() {
        // Shape sent by moto: no userIdentity, requestParameters, responseElements, sequencer.
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
            "eventTime":"2026-11-25T10:00:00.000Z","eventName":"ObjectCreated:Put",
            "s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"docs","arn":"arn:aws:s3:::docs"},
            "object":{"key":"a%2Fb.pdf","size":10,"eTag":"e"}}}]}"#;
        assert_eq!(jobs(body)[0].key, "a/b.pdf");
    }

    #[test]
    fn test_events_and_non_create_events_are_ignored() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T10:00:00.000Z","Bucket":"docs","RequestId":"r","HostId":"h"}"#;
        assert!(matches!(Delivery::parse(test), Ok(Delivery::Ignore(_))));
        let removed = format!(
            r#"{{"Records":[{}]}}"#,
            s3_record("ObjectRemoved:Delete", "a.pdf")
        );
        assert!(
            matches!(Delivery::parse(&removed), Ok(Delivery::Ignore(why)) if why.contains("ObjectRemoved:Delete"))
        );
        let mixed = format!(
            r#"{{"Records":[{},{}]}}"#,
            s3_record("ObjectRemoved:Delete", "a.pdf"),
            s3_record("ObjectCreated:CompleteMultipartUpload", "b.pdf")
        );
        assert_eq!(
            jobs(&mixed)
                .iter()
                .map(|j| j.key.as_str())
                .collect::<Vec<_>>(),
            ["b.pdf"]
        );
    }

    #[test]
    fn sns_wrapped_notification_is_unwrapped() {
        let inner = format!(
            r#"{{"Records":[{}]}}"#,
            s3_record("ObjectCreated:Put", "x+y.pdf")
        );
        let body = serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Subject": "Amazon S3 Notification", "Message": inner, "Timestamp": "2026-11-25T10:00:00.000Z",
            "SignatureVersion": "1", "Signature": "s", "SigningCertURL": "https://example.invalid/c",
            "UnsubscribeURL": "https://example.invalid/u"
        });
        assert_eq!(jobs(&body.to_string())[0].key, "x y.pdf");
        let test_event = serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": r#"{"Event":"s3:TestEvent"}"#,
            "Timestamp": "2026-11-25T10:00:00.000Z", "SignatureVersion": "1", "Signature": "s",
            "SigningCertURL": "c", "UnsubscribeURL": "u"
        });
        assert!(matches!(
            Delivery::parse(&test_event.to_string()),
            Ok(Delivery::Ignore(_))
        ));
    }

    #[test]
    fn eventbridge_object_created_keys_are_not_decoded() {
        let body = serde_json::json!({
            "version": "0", "id": "i", "detail-type": "Object Created", "source": "aws.s3",
            "account": "1", "time": "2026-11-25T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"version": "0", "bucket": {"name": "docs"},
                "object": {"key": "a+b %41.pdf", "size": 5, "etag": "e", "version-id": "v9", "sequencer": "1"},
                "request-id": "r", "requester": "q", "reason": "PutObject"}
        });
        let j = jobs(&body.to_string());
        assert_eq!(j[0].key, "a+b %41.pdf");
        assert_eq!(j[0].version_id.as_deref(), Some("v9"));
        let deleted = body.to_string().replace("Object Created", "Object Deleted");
        assert!(matches!(Delivery::parse(&deleted), Ok(Delivery::Ignore(_))));
    }

    #[test]
    fn unknown_bodies_are_errors() {
        assert!(matches!(
            Delivery::parse("hello"),
            Err(MessageError::NotJson(_))
        ));
        assert!(matches!(
            Delivery::parse("[1,2]"),
            Err(MessageError::UnknownShape)
        ));
        assert!(matches!(
            Delivery::parse(r#"{"foo":1}"#),
            Err(MessageError::UnknownShape)
        ));
        let bad_key = format!(
            r#"{{"Records":[{}]}}"#,
            s3_record("ObjectCreated:Put", "%FF.pdf")
        );
        assert!(matches!(
            Delivery::parse(&bad_key),
            Err(MessageError::BadKeyEncoding { .. })
        ));
    }
}
