//! The local model's tokenizer, built from the GGUF's own vocabulary and
//! merges (byte-level BPE with Qwen2's pre-tokenizer split): no tokenizer.json
//! to fetch.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Qwen2's pre-tokenizer split (as in its tokenizer.json).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The GGUF's tokenizer metadata is missing or not byte-level BPE.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("metadata {0} missing")]
    Missing(&'static str),
    #[error("metadata {key} has an unexpected type")]
    Metadata {
        key: &'static str,
        #[source]
        source: candle_core::Error,
    },
    #[error("tokenizer.ggml.model is {0:?}, expected \"gpt2\" (byte-level BPE)")]
    NotByteLevelBpe(String),
    #[error("bad merge {0:?}")]
    BadMerge(String),
    #[error("cannot build the tokenizer")]
    Build(#[source] tokenizers::Error),
}

/// A byte-level BPE tokenizer from the GGUF's `tokenizer.ggml.*` metadata.
pub(super) fn tokenizer_from_gguf(
    content: &gguf_file::Content,
) -> Result<Tokenizer, TokenizerError> {
    let get = |key: &'static str| {
        content
            .metadata
            .get(key)
            .ok_or(TokenizerError::Missing(key))
    };
    let wrong = |key: &'static str| move |source| TokenizerError::Metadata { key, source };
    let model = get("tokenizer.ggml.model")?
        .to_string()
        .map_err(wrong("tokenizer.ggml.model"))?;
    if model != "gpt2" {
        return Err(TokenizerError::NotByteLevelBpe(model.clone()));
    }
    let tokens = get("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(wrong("tokenizer.ggml.tokens"))?;
    let merges = get("tokenizer.ggml.merges")?
        .to_vec()
        .map_err(wrong("tokenizer.ggml.merges"))?;
    let types = content
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok());
    let mut vocab = HashMap::with_capacity(tokens.len());
    let mut specials = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let t = t.to_string().map_err(wrong("tokenizer.ggml.tokens"))?;
        // Type 3 = control token (<|im_start|>, <|endoftext|>, ...).
        if types.and_then(|ty| ty.get(i)).and_then(|v| v.to_i32().ok()) == Some(3) {
            specials.push(AddedToken::from(t.clone(), true));
        }
        vocab.insert(t.clone(), i as u32);
    }
    let merges = merges
        .iter()
        .map(|m| {
            let m = m.to_string().map_err(wrong("tokenizer.ggml.merges"))?;
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| TokenizerError::BadMerge(m.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .build()
        .map_err(TokenizerError::Build)?;
    let mut tokenizer = Tokenizer::new(bpe);
    let split = Split::new(
        SplitPattern::Regex(QWEN2_SPLIT.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(TokenizerError::Build)?;
    tokenizer
        .with_normalizer(Some(NFC))
        .map_err(TokenizerError::Build)?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, false, false).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer
        .add_special_tokens(specials)
        .map_err(TokenizerError::Build)?;
    Ok(tokenizer)
}
