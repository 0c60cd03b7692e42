//! The model's features per example, kept in a file (`train --cache`) so that
//! each document is read once: a rerun with other folds, penalties or
//! examples added reads only what is new.
//!
//! One JSON line per example with text: a key and the features (an example
//! without text is not kept: it is read again, in case the limits changed).
//! The key is the sha256 of the example's bytes (the PDF, or the
//! text) and of everything that shapes the features: the docsort version, the
//! model, the prompt and the reading. Lines are appended as examples are read,
//! so an interrupted run keeps what it read; a torn last line is ignored.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classify::local::head::FitFor;
use crate::classify::local::Features;
use crate::offline::train::TrainError;

/// Features read earlier, and the file new ones are appended to.
#[derive(Debug)]
pub struct FeatureCache {
    path: PathBuf,
    entries: HashMap<String, Features>,
    file: std::fs::File,
    /// Examples served from the file so far.
    pub hits: usize,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    first: Vec<f32>,
    full: Vec<f32>,
    tokens: u64,
}

impl FeatureCache {
    /// Opens `path`, creating it when it does not exist.
    pub fn open(path: &Path) -> Result<FeatureCache, TrainError> {
        let io = |source| TrainError::Read {
            path: path.to_owned(),
            source,
        };
        let mut entries = HashMap::new();
        let mut torn = false;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                torn = !text.is_empty() && !text.ends_with('\n');
                for line in text.lines() {
                    // A line cut short by an interrupted run is read again.
                    let Ok(line) = serde_json::from_str::<Line>(line) else {
                        continue;
                    };
                    let features = Features {
                        first: line.first,
                        full: line.full,
                        tokens_evaluated: line.tokens,
                    };
                    entries.insert(line.key, features);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| TrainError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TrainError::Write {
                path: path.to_owned(),
                source,
            })?;
        let mut cache = FeatureCache {
            path: path.to_owned(),
            entries,
            file,
            hits: 0,
        };
        if torn {
            // New lines start on a line of their own.
            cache.append("\n")?;
        }
        Ok(cache)
    }

    fn append(&mut self, text: &str) -> Result<(), TrainError> {
        self.file
            .write_all(text.as_bytes())
            .map_err(|source| TrainError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// The features kept under `key`.
    pub fn get(&mut self, key: &str) -> Option<Features> {
        let found = self.entries.get(key).cloned();
        self.hits += usize::from(found.is_some());
        found
    }

    /// Keeps `features` under `key`, in memory and in the file.
    pub fn put(&mut self, key: String, features: &Features) -> Result<(), TrainError> {
        let line = Line {
            key: key.clone(),
            first: features.first.clone(),
            full: features.full.clone(),
            tokens: features.tokens_evaluated,
        };
        let mut text = serde_json::to_string(&line).expect("a cache line serialises");
        text.push('\n');
        self.append(&text)?;
        self.entries.insert(key, features.clone());
        Ok(())
    }
}

/// The cache key of an example's bytes (`kind` says PDF or text) read for `fit_for`.
pub fn key(fit_for: &FitFor, kind: &str, bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION"),
        &fit_for.model_sha256,
        &fit_for.prompt_sha256,
        kind,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for n in [
        fit_for.doc_tokens,
        fit_for.first_tokens,
        fit_for.max_text_chars,
    ] {
        h.update((n as u64).to_le_bytes());
    }
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_survive_the_file_and_a_torn_line_is_ignored() {
        let dir = std::env::temp_dir().join(format!("docsort-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("features.jsonl");
        let _ = std::fs::remove_file(&path);
        let features = Features {
            first: vec![0.1, -2.5e-7, 3.0],
            full: vec![1.0 / 3.0, f32::MAX, -0.0],
            tokens_evaluated: 99,
        };
        let mut cache = FeatureCache::open(&path).unwrap();
        assert_eq!(cache.get("a"), None);
        cache.put("a".into(), &features).unwrap();
        drop(cache);
        // An interrupted run's last line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"key\":\"c\",\"first\":[0.").unwrap();
        let mut cache = FeatureCache::open(&path).unwrap();
        assert_eq!(cache.get("a"), Some(features.clone()), "bit for bit");
        assert_eq!(cache.get("c"), None);
        assert_eq!(cache.hits, 1);
        // What is kept after the torn line is read back too.
        cache.put("c".into(), &features).unwrap();
        drop(cache);
        let mut cache = FeatureCache::open(&path).unwrap();
        assert_eq!(cache.get("c"), Some(features));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
