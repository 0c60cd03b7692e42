//! PDF text extraction with honest outcomes: text, or why there is none.
//!
//! In the worker, each document is extracted in a child process
//! ([`Isolation::Process`]: `docsort-worker extract-child`) so that no single
//! document can take the worker down:
//! - **time**: the child is killed when the wall-time cap passes (`timeout`);
//! - **memory**: the child runs under `RLIMIT_AS` (address-space ceiling); an
//!   allocation past it aborts the child only (`too_large`);
//! - **crashes**: a parser panic, stack overflow or abort ends the child only
//!   (`malformed`).
//!
//! [`Isolation::InProcess`] runs on the blocking pool instead (for tools and
//! tests without the binary): the time cap abandons the thread, and there is
//! no memory ceiling.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use docsort_schema::FailureReason;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Text extracted from a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// The text of the first pages, in page order, up to the budget.
    pub text: String,
    /// Pages in the document.
    pub pages: u32,
}

/// Why a document yielded no text. Each maps to a `failed/<reason>` record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    #[error("the object does not start with a PDF header")]
    NotPdf,
    #[error("the PDF is password-protected")]
    Encrypted,
    #[error("the PDF cannot be parsed: {0}")]
    Malformed(String),
    #[error("the PDF's {pages} page(s) have no text layer (scanned or image-only)")]
    NoText { pages: u32 },
    #[error(
        "the PDF's text uses fonts without a Unicode mapping ({glyphs} glyphs could not be read)"
    )]
    Undecodable { pages: u32, glyphs: usize },
    #[error("text extraction took longer than {0:?}")]
    Timeout(Duration),
    #[error("text extraction needed more than the {mib} MiB memory ceiling")]
    MemoryLimit { mib: u64 },
}

impl ExtractError {
    /// The failure code stored in the record.
    pub fn reason(&self) -> FailureReason {
        match self {
            ExtractError::NotPdf => FailureReason::NotPdf,
            ExtractError::Encrypted => FailureReason::Encrypted,
            ExtractError::Malformed(_) => FailureReason::Malformed,
            ExtractError::NoText { .. } | ExtractError::Undecodable { .. } => FailureReason::NoText,
            ExtractError::Timeout(_) => FailureReason::Timeout,
            ExtractError::MemoryLimit { .. } => FailureReason::TooLarge,
        }
    }

    /// One sentence for the record's `detail`.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        let mut chars = text.chars();
        let mut out: String = chars
            .next()
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_default();
        out.push_str(chars.as_str());
        if !out.ends_with('.') {
            out.push('.');
        }
        out
    }

    /// Pages seen, when the document could be opened.
    pub fn pages(&self) -> Option<u32> {
        match self {
            ExtractError::NoText { pages } | ExtractError::Undecodable { pages, .. } => {
                Some(*pages)
            }
            _ => None,
        }
    }
}

/// Extracts text page by page until `budget_chars` non-whitespace characters
/// are collected (0 = no budget: the whole document).
pub fn extract(bytes: &[u8], budget_chars: usize) -> Result<Extracted, ExtractError> {
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(ExtractError::NotPdf);
    }
    let mut doc = lopdf::Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::InvalidPassword
        | lopdf::Error::Decryption(_)
        | lopdf::Error::AlreadyEncrypted => ExtractError::Encrypted,
        other => ExtractError::Malformed(other.to_string()),
    })?;
    if doc.is_encrypted() {
        return Err(ExtractError::Encrypted);
    }
    recover_unsized_streams(&mut doc, bytes);
    let result = crate::pdftext::extract_pages(&doc, budget_chars);
    if !result.text.chars().any(|c| !c.is_whitespace()) {
        return Err(match (result.undecodable, result.first_error) {
            (0, Some(e)) => ExtractError::Malformed(e),
            (0, None) => ExtractError::NoText {
                pages: result.pages,
            },
            (glyphs, _) => ExtractError::Undecodable {
                pages: result.pages,
                glyphs,
            },
        });
    }
    Ok(Extracted {
        text: result.text,
        pages: result.pages,
    })
}

/// Reads the data of streams whose `Length` lopdf could not resolve (a
/// reference to a missing object, or to the stream itself) up to their
/// `endstream` keyword, as poppler and pdf.js do; lopdf leaves them empty.
fn recover_unsized_streams(doc: &mut lopdf::Document, bytes: &[u8]) {
    const END: &[u8] = b"endstream";
    for object in doc.objects.values_mut() {
        let lopdf::Object::Stream(stream) = object else {
            continue;
        };
        let Some(start) = stream.start_position.filter(|_| stream.content.is_empty()) else {
            continue;
        };
        let Some(data) = bytes.get(start..) else {
            continue;
        };
        if let Some(end) = data.windows(END.len()).position(|w| w == END) {
            let data = &data[..end];
            let data = data.strip_suffix(b"\n").unwrap_or(data);
            let data = data.strip_suffix(b"\r").unwrap_or(data);
            tracing::debug!(
                start,
                len = data.len(),
                "stream without a usable Length read to endstream"
            );
            stream.set_content(data.to_vec());
        }
    }
}

/// Where extraction runs.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// In a child process of this executable (`extract-child`), under a memory ceiling.
    Process {
        /// The `docsort-worker` executable.
        exe: PathBuf,
        /// Address-space ceiling of the child, in MiB.
        memory_mib: u64,
    },
    /// On this process's blocking pool.
    InProcess,
}

/// How an extraction went, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractStats {
    /// Wall time.
    pub elapsed_ms: u64,
    /// Peak resident memory of the extracting child, in KiB (0 in-process).
    pub peak_rss_kib: u64,
}

/// What `extract-child` writes to its standard output.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildReport {
    /// The outcome.
    pub result: Result<Extracted, ExtractError>,
    /// The child's peak resident memory, in KiB.
    pub peak_rss_kib: u64,
}

/// Runs [`extract`] in this process as the `extract-child` command: reads a PDF
/// on standard input, writes a [`ChildReport`] as JSON on standard output.
pub fn run_child(budget_chars: usize) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    let result = extract(&bytes, budget_chars);
    drop(bytes);
    let report = ChildReport {
        result,
        peak_rss_kib: peak_rss_kib(),
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &report)?;
    out.flush()
}

/// This process's peak resident memory. Linux's `VmHWM` is this program's
/// own; `getrusage`'s maximum carries over from the forking parent across
/// exec, so a large parent would hide a small child.
fn peak_rss_kib() -> u64 {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
    if let Some(kib) = hwm {
        return kib;
    }
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0 {
            return u64::try_from(usage.ru_maxrss).unwrap_or(0);
        }
    }
    0
}

/// Extracts `bytes` under the time cap (and, isolated, the memory ceiling).
pub async fn extract_bounded(
    isolation: &Isolation,
    bytes: Vec<u8>,
    budget_chars: usize,
    timeout: Duration,
) -> (Result<Extracted, ExtractError>, ExtractStats) {
    let start = Instant::now();
    let (result, peak_rss_kib) = match isolation {
        Isolation::InProcess => {
            let task = tokio::task::spawn_blocking(move || extract(&bytes, budget_chars));
            let result = match tokio::time::timeout(timeout, task).await {
                Err(_) => Err(ExtractError::Timeout(timeout)),
                Ok(Err(join)) => Err(ExtractError::Malformed(format!(
                    "the parser crashed: {join}"
                ))),
                Ok(Ok(result)) => result,
            };
            (result, 0)
        }
        Isolation::Process { exe, memory_mib } => {
            match tokio::time::timeout(timeout, in_child(exe, *memory_mib, bytes, budget_chars))
                .await
            {
                Err(_) => (Err(ExtractError::Timeout(timeout)), 0),
                Ok(Ok(report)) => (report.result, report.peak_rss_kib),
                Ok(Err(e)) => (Err(e), 0),
            }
        }
    };
    let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    (
        result,
        ExtractStats {
            elapsed_ms,
            peak_rss_kib,
        },
    )
}

async fn in_child(
    exe: &std::path::Path,
    memory_mib: u64,
    bytes: Vec<u8>,
    budget_chars: usize,
) -> Result<ChildReport, ExtractError> {
    let mut command = tokio::process::Command::new(exe);
    command
        .args([
            "extract-child",
            "--max-text-chars",
            &budget_chars.to_string(),
        ])
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let limit = memory_mib.saturating_mul(1024 * 1024);
    // SAFETY: only async-signal-safe calls (setrlimit, prctl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let crashed = |what: String| ExtractError::Malformed(format!("the extractor process {what}"));
    let mut child = command
        .spawn()
        .map_err(|e| crashed(format!("could not start ({}): {e}", exe.display())))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let feed = async move {
        // A child that dies early closes its stdin: that shows in its exit status.
        let _ = stdin.write_all(&bytes).await;
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let (_, read_out, _) = tokio::join!(
        feed,
        stdout.read_to_end(&mut out),
        stderr.read_to_end(&mut err)
    );
    let status = child
        .wait()
        .await
        .map_err(|e| crashed(format!("could not be waited for: {e}")))?;
    read_out.map_err(|e| crashed(format!("output could not be read: {e}")))?;
    if status.success() {
        return serde_json::from_slice(&out)
            .map_err(|e| crashed(format!("wrote an unreadable report: {e}")));
    }
    let stderr = String::from_utf8_lossy(&err);
    if stderr.contains("memory allocation of") || stderr.contains("out of memory") {
        return Err(ExtractError::MemoryLimit { mib: memory_mib });
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    Err(crashed(format!(
        "died ({status}){}",
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF with a correct cross-reference table whose content
    /// stream's `Length` is `length` (written as given).
    fn pdf_with_content_length(length: &str, content: &str) -> Vec<u8> {
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 600 800] >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_owned(),
            format!("<< /Length {length} >>\nstream\n{content}\nendstream"),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        ];
        let mut pdf = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).bytes());
        }
        let xref = pdf.len();
        pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
        for offset in offsets {
            pdf.extend(format!("{offset:010} 00000 n \n").bytes());
        }
        pdf.extend(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .bytes(),
        );
        pdf
    }

    #[test]
    fn a_stream_whose_length_cannot_be_resolved_is_read_to_endstream() {
        let content = "BT /F1 12 Tf 72 700 Td (recovered text) Tj ET";
        let good = extract(
            &pdf_with_content_length(&content.len().to_string(), content),
            0,
        );
        assert_eq!(
            good.map(|x| x.text.trim().to_owned()),
            Ok("recovered text".to_owned())
        );
        // The Length refers to the stream itself (a fuzzed file), or to no object.
        for length in ["4 0 R", "9 0 R"] {
            let got = extract(&pdf_with_content_length(length, content), 0);
            assert_eq!(
                got.map(|x| x.text.trim().to_owned()),
                Ok("recovered text".to_owned()),
                "Length {length}"
            );
        }
    }
}
