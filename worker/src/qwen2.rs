//! A Qwen2 forward pass for label scoring, on candle's quantized matrices.
//!
//! Unlike a general-purpose model it keeps the token-embedding table quantized
//! (rows are expanded as tokens come; the f32 table would take 0.9 GB), scores
//! only the categories' first tokens instead of the whole 151,936-token
//! vocabulary, and hands the attention cache to the caller, who can reuse the
//! evaluated part of a prompt (a fixed prefix, or a document's first tokens).

use candle_core::quantized::{ggml_file::qtensor_from_ggml, gguf_file, GgmlDType, QMatMul};
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::{build_additive_causal_mask, repeat_kv};

/// A quantized matrix kept as raw blocks, whose rows are expanded one at a time.
struct Rows {
    dtype: GgmlDType,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl Rows {
    fn read<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        name: &str,
    ) -> Result<Self> {
        let tensor = content.tensor(reader, name, &Device::Cpu)?;
        let (_, cols) = tensor.shape().dims2()?;
        let dtype = tensor.dtype();
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        Ok(Rows {
            dtype,
            cols,
            row_bytes,
            data: tensor.data()?.into_owned(),
        })
    }

    fn row(&self, index: usize) -> Result<Tensor> {
        let bytes = self
            .data
            .get(index * self.row_bytes..(index + 1) * self.row_bytes)
            .ok_or_else(|| {
                candle_core::Error::Msg(format!("token {index} out of the vocabulary"))
            })?;
        qtensor_from_ggml(self.dtype, bytes, vec![self.cols], &Device::Cpu)?
            .dequantize(&Device::Cpu)
    }

    /// The rows for `indices`, stacked.
    fn rows(&self, indices: &[u32]) -> Result<Tensor> {
        let rows = indices
            .iter()
            .map(|&i| self.row(i as usize))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }
}

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    bq: Tensor,
    bk: Tensor,
    bv: Tensor,
    wo: QMatMul,
    attn_norm: RmsNorm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    ffn_norm: RmsNorm,
}

/// Keys and values of the positions evaluated so far, per layer. Cloning is
/// cheap (tensors are shared), so a cache can be kept and continued twice.
#[derive(Clone, Default)]
pub(crate) struct Cache {
    kv: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl Cache {
    /// Forgets every position from `len` on.
    pub(crate) fn truncate(&mut self, len: usize) -> Result<()> {
        if len < self.len {
            for (k, v) in &mut self.kv {
                *k = k.narrow(2, 0, len)?;
                *v = v.narrow(2, 0, len)?;
            }
            self.len = len;
        }
        Ok(())
    }
}

pub(crate) struct Qwen2 {
    embeddings: Rows,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// Output rows of the scored tokens, `[labels, hidden]`.
    head: Tensor,
    cos: Tensor,
    sin: Tensor,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
}

impl Qwen2 {
    /// Reads a Qwen2 GGUF; `scored` are the tokens whose logits [`Qwen2::scores`] returns.
    pub(crate) fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        scored: &[u32],
    ) -> Result<Self> {
        let meta = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("metadata {key} missing")))
        };
        let n_head = meta("qwen2.attention.head_count")?.to_u32()? as usize;
        let n_kv_head = meta("qwen2.attention.head_count_kv")?.to_u32()? as usize;
        let hidden = meta("qwen2.embedding_length")?.to_u32()? as usize;
        let context = meta("qwen2.context_length")?.to_u32()? as usize;
        let blocks = meta("qwen2.block_count")?.to_u32()? as usize;
        let eps = f64::from(meta("qwen2.attention.layer_norm_rms_epsilon")?.to_f32()?);
        let rope_base = meta("qwen2.rope.freq_base")
            .and_then(|m| m.to_f32())
            .unwrap_or(10_000.0);
        let head_dim = hidden / n_head;

        let embeddings = Rows::read(content, reader, "token_embd.weight")?;
        // Tied embeddings when the file has no output matrix.
        let head = match content.tensor_infos.contains_key("output.weight") {
            true => Rows::read(content, reader, "output.weight")?.rows(scored)?,
            false => embeddings.rows(scored)?,
        };
        let norm = RmsNorm::from_qtensor(
            content.tensor(reader, "output_norm.weight", &Device::Cpu)?,
            eps,
        )?;

        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / rope_base.powf(i as f32 / head_dim as f32))
            .collect();
        let inv_freq = Tensor::new(inv_freq.as_slice(), &Device::Cpu)?;
        let positions = Tensor::arange(0u32, context as u32, &Device::Cpu)?
            .to_dtype(DType::F32)?
            .reshape((context, 1))?;
        let angles = positions.matmul(&inv_freq.reshape((1, head_dim / 2))?)?;

        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut q =
                |name: &str| content.tensor(reader, &format!("blk.{i}.{name}"), &Device::Cpu);
            layers.push(Layer {
                wq: QMatMul::from_qtensor(q("attn_q.weight")?)?,
                wk: QMatMul::from_qtensor(q("attn_k.weight")?)?,
                wv: QMatMul::from_qtensor(q("attn_v.weight")?)?,
                bq: q("attn_q.bias")?.dequantize(&Device::Cpu)?,
                bk: q("attn_k.bias")?.dequantize(&Device::Cpu)?,
                bv: q("attn_v.bias")?.dequantize(&Device::Cpu)?,
                wo: QMatMul::from_qtensor(q("attn_output.weight")?)?,
                attn_norm: RmsNorm::from_qtensor(q("attn_norm.weight")?, eps)?,
                gate: QMatMul::from_qtensor(q("ffn_gate.weight")?)?,
                up: QMatMul::from_qtensor(q("ffn_up.weight")?)?,
                down: QMatMul::from_qtensor(q("ffn_down.weight")?)?,
                ffn_norm: RmsNorm::from_qtensor(q("ffn_norm.weight")?, eps)?,
            });
        }
        Ok(Qwen2 {
            embeddings,
            layers,
            norm,
            head,
            cos: angles.cos()?,
            sin: angles.sin()?,
            n_head,
            n_kv_head,
            head_dim,
        })
    }

    /// Evaluates `tokens` after the positions in `cache` (which grows by them)
    /// and returns the final hidden state of the last token.
    pub(crate) fn extend(&self, cache: &mut Cache, tokens: &[u32]) -> Result<Tensor> {
        let (start, n) = (cache.len, tokens.len());
        if n == 0 {
            candle_core::bail!("no tokens to evaluate");
        }
        let mask = build_additive_causal_mask(n, start, None, &Device::Cpu, DType::F32)?;
        let cos = self.cos.narrow(0, start, n)?;
        let sin = self.sin.narrow(0, start, n)?;
        let mut x = self.embeddings.rows(tokens)?.unsqueeze(0)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let heads = |t: Tensor, count: usize| {
                t.reshape((1, n, count, self.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = heads(layer.wq.forward(&h)?.broadcast_add(&layer.bq)?, self.n_head)?;
            let k = heads(
                layer.wk.forward(&h)?.broadcast_add(&layer.bk)?,
                self.n_kv_head,
            )?;
            let v = heads(
                layer.wv.forward(&h)?.broadcast_add(&layer.bv)?,
                self.n_kv_head,
            )?;
            let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
            let (k, v) = match cache.kv.get(i) {
                Some((past_k, past_v)) => (
                    Tensor::cat(&[past_k, &k], 2)?,
                    Tensor::cat(&[past_v, &v], 2)?,
                ),
                None => (k, v),
            };
            if i < cache.kv.len() {
                cache.kv[i] = (k.clone(), v.clone());
            } else {
                cache.kv.push((k.clone(), v.clone()));
            }
            let groups = self.n_head / self.n_kv_head;
            let (k, v) = (repeat_kv(k, groups)?, repeat_kv(v, groups)?.contiguous()?);
            let scores =
                (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(&mask)?;
            let attended = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
            let attended =
                attended
                    .transpose(1, 2)?
                    .reshape((1, n, self.n_head * self.head_dim))?;
            x = (layer.wo.forward(&attended)? + x)?;
            let h = layer.ffn_norm.forward(&x)?;
            let mlp = layer.down.forward(
                &(candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?,
            )?;
            x = (mlp + x)?;
        }
        cache.len += n;
        self.norm.forward(&x.narrow(1, n - 1, 1)?)?.flatten_all()
    }

    /// Logits of the scored tokens after the hidden state `last`.
    pub(crate) fn scores(&self, last: &Tensor) -> Result<Vec<f32>> {
        self.head
            .matmul(&last.unsqueeze(1)?)?
            .squeeze(D::Minus1)?
            .to_vec1::<f32>()
    }
}
