//! Bedrock's batch outputs: one `.jsonl.out` line per processed record,
//! `{"recordId", "modelInput", "modelOutput"}` with the Converse response,
//! or `"error"` in place of `modelOutput`. Lines come in any order: they are
//! joined to the manifest on `recordId`.

use serde::Deserialize;
use serde_json::Value;

/// What one record got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    /// The model answered.
    Answer {
        /// The answer's text.
        text: String,
        /// Input tokens billed.
        input_tokens: u64,
        /// Output tokens billed.
        output_tokens: u64,
    },
    /// An error record: Bedrock's code and message.
    Error(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    record_id: String,
    #[serde(default)]
    model_input: Value,
    #[serde(default)]
    model_output: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// One output line.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRecord {
    /// The record's id, as staged.
    pub record_id: String,
    /// What it got.
    pub result: RecordResult,
    /// The request as staged (Bedrock echoes it), for a re-ask.
    pub model_input: Value,
}

/// One output line's record id, result and request.
pub fn parse_line(line: &[u8]) -> Result<OutputRecord, serde_json::Error> {
    let line: Line = serde_json::from_slice(line)?;
    let result = match (line.model_output, line.error) {
        (Some(output), None) => answer(&output),
        (_, Some(error)) => RecordResult::Error(format!(
            "{} {}",
            error["errorCode"],
            error["errorMessage"].as_str().unwrap_or("")
        )),
        (None, None) => RecordResult::Error("neither modelOutput nor error".into()),
    };
    Ok(OutputRecord {
        record_id: line.record_id,
        result,
        model_input: line.model_input,
    })
}

/// A Converse response body's text and usage.
fn answer(output: &Value) -> RecordResult {
    let text = output["output"]["message"]["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default();
    RecordResult::Answer {
        text,
        input_tokens: output["usage"]["inputTokens"].as_u64().unwrap_or(0),
        output_tokens: output["usage"]["outputTokens"].as_u64().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_error_records_parse() {
        let ok = br#"{"recordId":"00000000001","modelInput":{},"modelOutput":{"output":{"message":{"role":"assistant","content":[{"text":"invoice"}]}},"stopReason":"end_turn","usage":{"inputTokens":812,"outputTokens":2,"totalTokens":814}}}"#;
        let ok = parse_line(ok).unwrap();
        assert_eq!(ok.record_id, "00000000001");
        assert_eq!(
            ok.result,
            RecordResult::Answer {
                text: "invoice".into(),
                input_tokens: 812,
                output_tokens: 2
            }
        );
        let error = br#"{"recordId":"00000000002","modelInput":{},"error":{"errorCode":429,"errorMessage":"Too many tokens"}}"#;
        assert_eq!(
            parse_line(error).unwrap().result,
            RecordResult::Error("429 Too many tokens".into())
        );
        assert!(parse_line(b"{\"modelOutput\":{}}").is_err());
    }
}
