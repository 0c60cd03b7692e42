//! Extraction under bounds: each document in a child process of this
//! executable (`docsort-worker extract-child`) so that no document can take
//! the worker down:
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

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::document::{read, ExtractError, Extracted};
use super::page_image::Fallback;

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

/// The bounds of one document's extraction.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall time one document's extraction may take (`failed/timeout` after).
    pub timeout: Duration,
    /// Where extraction runs, and its memory ceiling.
    pub isolation: Isolation,
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

/// Runs [`read`] in this process as the `extract-child` command: reads a PDF
/// on standard input, writes a [`ChildReport`] as JSON on standard output.
/// The tools a page image needs (`pdftoppm`, `tesseract`) run as its own
/// children, under its memory ceiling.
pub fn run_child(budget_chars: usize, fallback: Fallback) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    let result = read(&bytes, budget_chars, fallback);
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
pub fn peak_rss_kib() -> u64 {
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

/// Reads `bytes` ([`read`]) under `limits`' time cap (and, isolated, memory
/// ceiling).
pub async fn extract_bounded(
    limits: &Limits,
    bytes: Vec<u8>,
    budget_chars: usize,
    fallback: Fallback,
) -> (Result<Extracted, ExtractError>, ExtractStats) {
    let start = Instant::now();
    let timeout = limits.timeout;
    let (result, peak_rss_kib) = match &limits.isolation {
        Isolation::InProcess => {
            let task = tokio::task::spawn_blocking(move || read(&bytes, budget_chars, fallback));
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
            match tokio::time::timeout(
                timeout,
                in_child(exe, *memory_mib, bytes, budget_chars, fallback),
            )
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
    fallback: Fallback,
) -> Result<ChildReport, ExtractError> {
    let mut command = tokio::process::Command::new(exe);
    command
        .args([
            "extract-child",
            "--max-text-chars",
            &budget_chars.to_string(),
            "--fallback",
            fallback.as_str(),
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
    Err(crashed(format!("died ({status}){}", last_words(&stderr))))
}

/// What a failed child process said last on stderr, as ": <line>" to follow
/// its exit status, or nothing when it said nothing.
pub(super) fn last_words(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::last_words;

    #[test]
    fn last_words_are_the_last_line_said() {
        assert_eq!(
            last_words("warning: x\n  Syntax Error: bad xref  \n\n"),
            ": Syntax Error: bad xref"
        );
        assert_eq!(last_words(" \n\n"), "");
        assert_eq!(last_words(""), "");
    }
}
