//! A Qwen2 forward pass for label scoring, on candle's quantized matrices.
//!
//! Unlike a general-purpose model it keeps the token-embedding table quantized
//! (rows are expanded as tokens come; the f32 table would take 0.9 GB), scores
//! only the categories' first tokens instead of the whole 151,936-token
//! vocabulary, and hands the attention cache to the caller, who can reuse the
//! evaluated part of a prompt (a fixed prefix, or a document's first tokens).
//!
//! Weights are read in place from the memory-mapped model file. On x86-64 with
//! AVX2, candle's matrix kernels work on a tiled copy of each weight matrix that
//! they build on first use; the load builds every copy at once, matrix by
//! matrix, and hands the mapped pages of the original blocks back to the
//! kernel, so the process holds one copy of each matrix instead of two.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QStorage, QTensor, QuantizedType};
use candle_core::{CpuStorage, DType, Device, Module, Result, Tensor, D};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::{build_additive_causal_mask, repeat_kv};
use memmap2::Mmap;

/// A GGUF file mapped read-only, with its parsed header.
pub(super) struct Weights {
    pub(crate) content: gguf_file::Content,
    map: Arc<Mmap>,
}

impl Weights {
    /// Maps the GGUF file at `path` and reads its header.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let content = gguf_file::Content::read(&mut file)?;
        // SAFETY: the model file is verified when it is fetched and never
        // written while docsort runs; the map is read-only.
        let map = unsafe { Mmap::map(&file)? };
        Ok(Weights {
            content,
            map: Arc::new(map),
        })
    }

    /// The dtype, shape and bytes (within the map) of the tensor `name`.
    fn locate(&self, name: &str) -> Result<(GgmlDType, Vec<usize>, Range<usize>)> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("tensor {name} missing")))?;
        let dtype = info.ggml_dtype;
        let dims = info.shape.dims().to_vec();
        let elems = info.shape.elem_count();
        if elems % dtype.block_size() != 0 {
            candle_core::bail!("tensor {name}: {elems} elements do not fill whole blocks");
        }
        let len = elems / dtype.block_size() * dtype.type_size();
        let start = usize::try_from(self.content.tensor_data_offset + info.offset)
            .map_err(|_| candle_core::Error::Msg(format!("tensor {name}: offset too large")))?;
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.map.len())
        {
            candle_core::bail!("tensor {name} runs past the end of the file");
        }
        Ok((dtype, dims, start..start + len))
    }

    /// The tensor `name`, read in place from the map where its block type
    /// allows, else copied into memory.
    fn tensor(&self, name: &str) -> Result<QTensor> {
        let (dtype, dims, bytes) = self.locate(name)?;
        QTensor::new(QStorage::Cpu(self.storage(dtype, &bytes)), dims)
    }

    /// The weight matrix `name` (see [`Weights::tensor`]), ready for use: one
    /// product with two rows (the kernels' smallest case that is not a
    /// matrix-vector product) makes candle build its tiled copy now, after
    /// which the original blocks' pages are released, so that at most one
    /// matrix is held twice at any moment.
    fn matrix(&self, name: &str) -> Result<QMatMul> {
        let (_, dims, bytes) = self.locate(name)?;
        let cols = dims.last().copied().unwrap_or_default();
        let matrix = QMatMul::from_qtensor(self.tensor(name)?)?;
        matrix.forward(&Tensor::zeros((2, cols), DType::F32, &Device::Cpu)?)?;
        self.release(&bytes);
        Ok(matrix)
    }

    /// The blocks of `bytes`: read in place from the map where their type
    /// allows, else copied into memory.
    fn storage(&self, dtype: GgmlDType, bytes: &Range<usize>) -> Box<dyn QuantizedType> {
        let mapped = match dtype {
            GgmlDType::Q4K => Mapped::<k_quants::BlockQ4K>::boxed(&self.map, bytes),
            GgmlDType::Q5K => Mapped::<k_quants::BlockQ5K>::boxed(&self.map, bytes),
            GgmlDType::Q6K => Mapped::<k_quants::BlockQ6K>::boxed(&self.map, bytes),
            GgmlDType::Q8_0 => Mapped::<k_quants::BlockQ8_0>::boxed(&self.map, bytes),
            _ => None,
        };
        mapped.unwrap_or_else(|| dtype.from_data(Cow::Borrowed(&self.map[bytes.clone()])))
    }

    /// Tells the kernel that the mapped pages of `bytes` are not needed now;
    /// they are read from the file again if they ever are.
    fn release(&self, bytes: &Range<usize>) {
        // SAFETY: the map is a read-only shared file mapping: after
        // MADV_DONTNEED an access reads the same bytes from the file again,
        // so no reference into the map observes a change.
        let result = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                bytes.start,
                bytes.len(),
            )
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "madvise(DONTNEED) on the model map failed");
        }
    }
}

/// Quantized blocks of type `T` read in place from the mapped model file.
struct Mapped<T> {
    map: Arc<Mmap>,
    start: usize,
    blocks: usize,
    _block: PhantomData<T>,
}

impl<T: GgmlType + 'static> Mapped<T> {
    /// `None` when `bytes` is not a whole number of aligned blocks.
    fn boxed(map: &Arc<Mmap>, bytes: &Range<usize>) -> Option<Box<dyn QuantizedType>> {
        let size = std::mem::size_of::<T>();
        let aligned = (map.as_ptr() as usize + bytes.start) % std::mem::align_of::<T>() == 0;
        (aligned && bytes.len() % size == 0).then(|| {
            Box::new(Mapped::<T> {
                map: Arc::clone(map),
                start: bytes.start,
                blocks: bytes.len() / size,
                _block: PhantomData,
            }) as Box<dyn QuantizedType>
        })
    }

    fn slice(&self) -> &[T] {
        // SAFETY: `boxed` checked that the range lies in the map, is aligned
        // for `T` and holds whole blocks; ggml blocks are plain bytes and
        // half-floats, valid for any bit pattern; the map lives as long as self.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(self.start).cast::<T>(), self.blocks)
        }
    }
}

impl<T: GgmlType + 'static> QuantizedType for Mapped<T> {
    fn dtype(&self) -> GgmlDType {
        T::DTYPE
    }

    fn matmul_t(&self, mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) -> Result<()> {
        k_quants::matmul(mkn, lhs, self.slice(), dst)
    }

    fn matmul_t_f16(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[half::f16],
        dst: &mut [half::f16],
    ) -> Result<()> {
        k_quants::matmul_f16(mkn, lhs, self.slice(), dst)
    }

    fn embedding(&self, ids: &[u32], rows: usize, hidden: usize) -> Result<CpuStorage> {
        let row_blocks = hidden / T::BLCK_SIZE;
        if hidden % T::BLCK_SIZE != 0 || rows * row_blocks != self.blocks {
            candle_core::bail!(
                "embedding of {rows}x{hidden} does not fit {} blocks",
                self.blocks
            );
        }
        let mut out = vec![0f32; ids.len() * hidden];
        for (dst, &id) in out.chunks_exact_mut(hidden).zip(ids) {
            let id = id as usize;
            if id >= rows {
                candle_core::bail!("embedding id {id} is out of range for {rows} rows");
            }
            T::to_float(&self.slice()[id * row_blocks..(id + 1) * row_blocks], dst);
        }
        Ok(CpuStorage::F32(out))
    }

    fn dequantize(&self, elem_count: usize) -> Result<CpuStorage> {
        let mut out = vec![0f32; elem_count];
        T::to_float(self.slice(), &mut out);
        Ok(CpuStorage::F32(out))
    }

    fn storage_size_in_bytes(&self) -> usize {
        self.blocks * std::mem::size_of::<T>()
    }

    fn as_ptr(&self) -> *const u8 {
        self.slice().as_ptr().cast()
    }

    fn block_size(&self) -> usize {
        T::BLCK_SIZE
    }

    fn from_float(&mut self, _xs: &[f32]) {
        unreachable!("mapped model weights are read-only and never requantized")
    }

    fn from_float_imatrix(&mut self, _xs: &[f32], _imatrix: &[f32], _n_per_row: usize) {
        unreachable!("mapped model weights are read-only and never requantized")
    }

    fn size(&self) -> usize {
        self.storage_size_in_bytes()
    }
}

/// A quantized matrix read from the map, whose rows are expanded one at a time.
struct Rows {
    storage: Box<dyn QuantizedType>,
    rows: usize,
    cols: usize,
}

impl Rows {
    fn read(weights: &Weights, name: &str) -> Result<Self> {
        let (dtype, dims, bytes) = weights.locate(name)?;
        let [rows, cols] = dims[..] else {
            candle_core::bail!("tensor {name} is not a matrix: {dims:?}");
        };
        Ok(Rows {
            storage: weights.storage(dtype, &bytes),
            rows,
            cols,
        })
    }

    /// The rows for `indices`, stacked.
    fn rows(&self, indices: &[u32]) -> Result<Tensor> {
        match self.storage.embedding(indices, self.rows, self.cols)? {
            CpuStorage::F32(values) => {
                Tensor::from_vec(values, (indices.len(), self.cols), &Device::Cpu)
            }
            _ => candle_core::bail!("embedding rows did not come out as f32"),
        }
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
pub(super) struct Cache {
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

pub(super) struct Qwen2 {
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
    pub(crate) fn load(weights: &Weights, scored: &[u32]) -> Result<Self> {
        let meta = |key: &str| {
            weights
                .content
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

        let embeddings = Rows::read(weights, "token_embd.weight")?;
        // Tied embeddings when the file has no output matrix.
        let head = match weights.content.tensor_infos.contains_key("output.weight") {
            true => Rows::read(weights, "output.weight")?.rows(scored)?,
            false => embeddings.rows(scored)?,
        };
        let norm = RmsNorm::from_qtensor(weights.tensor("output_norm.weight")?, eps)?;

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
            let name = |name: &str| format!("blk.{i}.{name}");
            let vector = |n: &str| weights.tensor(&name(n))?.dequantize(&Device::Cpu);
            let norm = |n: &str| RmsNorm::from_qtensor(weights.tensor(&name(n))?, eps);
            let matrix = |n: &str| weights.matrix(&name(n));
            layers.push(Layer {
                wq: matrix("attn_q.weight")?,
                wk: matrix("attn_k.weight")?,
                wv: matrix("attn_v.weight")?,
                bq: vector("attn_q.bias")?,
                bk: vector("attn_k.bias")?,
                bv: vector("attn_v.bias")?,
                wo: matrix("attn_output.weight")?,
                attn_norm: norm("attn_norm.weight")?,
                gate: matrix("ffn_gate.weight")?,
                up: matrix("ffn_up.weight")?,
                down: matrix("ffn_down.weight")?,
                ffn_norm: norm("ffn_norm.weight")?,
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
    ///
    /// Only that state is wanted, so the last layer computes keys and values
    /// for every position (the cache needs them) and the rest for the last
    /// position alone.
    pub(crate) fn extend(&self, cache: &mut Cache, tokens: &[u32]) -> Result<Tensor> {
        let (start, n) = (cache.len, tokens.len());
        if n == 0 {
            candle_core::bail!("no tokens to evaluate");
        }
        let mask = build_additive_causal_mask(n, start, None, &Device::Cpu, DType::F32)?;
        let cos = self.cos.narrow(0, start, n)?;
        let sin = self.sin.narrow(0, start, n)?;
        let mut x = self.embeddings.rows(tokens)?.unsqueeze(0)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_norm.forward(&x)?;
            let heads = |t: Tensor, count: usize, rows: usize| {
                t.reshape((1, rows, count, self.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            // The queries of the rows this layer passes on: all of them, or
            // in the last layer the last one.
            let (q, k, v) = if i < last {
                let [q, k, v] = project(&h, [&layer.wq, &layer.wk, &layer.wv])?;
                (q, k, v)
            } else {
                let [k, v] = project(&h, [&layer.wk, &layer.wv])?;
                (layer.wq.forward(&h.narrow(1, n - 1, 1)?)?, k, v)
            };
            let rows = q.dim(1)?;
            let skipped = n - rows;
            x = x.narrow(1, skipped, rows)?;
            let q = heads(q.broadcast_add(&layer.bq)?, self.n_head, rows)?;
            let k = heads(k.broadcast_add(&layer.bk)?, self.n_kv_head, n)?;
            let v = heads(v.broadcast_add(&layer.bv)?, self.n_kv_head, n)?;
            let q = candle_nn::rotary_emb::rope(
                &q,
                &cos.narrow(0, skipped, rows)?,
                &sin.narrow(0, skipped, rows)?,
            )?;
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
            let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?
                .broadcast_add(&mask.narrow(2, skipped, rows)?)?;
            let attended = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
            let attended =
                attended
                    .transpose(1, 2)?
                    .reshape((1, rows, self.n_head * self.head_dim))?;
            x = (layer.wo.forward(&attended)? + x)?;
            let h = layer.ffn_norm.forward(&x)?;
            let [gate, up] = project(&h, [&layer.gate, &layer.up])?;
            let mlp = layer.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
            x = (mlp + x)?;
        }
        cache.len += n;
        self.norm.forward(&x)?.flatten_all()
    }

    /// The hidden state's size.
    pub(crate) fn hidden_size(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Logits of the scored tokens after the hidden state `last`.
    pub(crate) fn scores(&self, last: &[f32]) -> Result<Vec<f32>> {
        let last = Tensor::new(last, &Device::Cpu)?;
        self.head
            .matmul(&last.unsqueeze(1)?)?
            .squeeze(D::Minus1)?
            .to_vec1::<f32>()
    }
}

/// `x` through each of `matrices`, which all take it as input. Where candle
/// has a fused kernel for them (AVX-512 VNNI, one block type) that is one
/// quantization of `x` and one parallel region instead of one of each per
/// matrix, with the same results; else one product per matrix.
fn project<const N: usize>(x: &Tensor, matrices: [&QMatMul; N]) -> Result<[Tensor; N]> {
    let quantized: Option<Vec<&QTensor>> = matrices
        .iter()
        .map(|m| match m {
            QMatMul::QTensor(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect();
    let fused = match quantized {
        Some(ts) => QTensor::gemv_fused_shared_lhs(&ts, x)?,
        None => None,
    };
    let outputs = match fused {
        Some(outputs) => outputs,
        None => matrices
            .iter()
            .map(|m| m.forward(x))
            .collect::<Result<Vec<_>>>()?,
    };
    outputs
        .try_into()
        .map_err(|_| candle_core::Error::Msg("a fused product returned the wrong count".into()))
}
