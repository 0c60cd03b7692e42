//! Image-only PDFs: one page whose only content is a grey image, stored in
//! the encodings scanners write, plus a blank scan and a decompression bomb.

use std::io::Write;

use flate2::{Compress, Compression, FlushCompress, Status};
use lopdf::{dictionary, Dictionary, Document, Object, Stream};

use super::image::{Gray, SplitMix64};
use super::A4_PT;

/// How the page's image is stored in the PDF (always `/DeviceGray`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Baseline JPEG (`/DCTDecode`), 8 bits, at this quality (1 to 100).
    Jpeg { quality: u8 },
    /// 8 bits, `/FlateDecode`.
    FlateGray,
    /// 1 bit (threshold 128: darker is black), rows padded to a byte,
    /// `/FlateDecode`; bit 0 is black under the default `/Decode [0 1]`.
    OneBit,
    /// 1 bit (threshold 128), CCITT Group 4: `/CCITTFaxDecode` with `/K -1`,
    /// `/Columns`, `/Rows` and `/BlackIs1 false` (0 bits are black).
    CcittG4,
    /// 8 bits, `/FlateDecode`, in this many horizontal strips (at least 1, at
    /// most one a row), each its own image XObject drawn at its own place, as
    /// some scanners write a page.
    Strips(u32),
}

/// One image XObject and where it goes: its bottom and height in points (it
/// always spans the page's width).
type Placed = (Stream, f32, f32);

/// A one-page image-only PDF: no text layer and no fonts; the page's content
/// draws `image`, stored as `storage` says, over the whole MediaBox
/// (`page_pt` = width, height in points), and the page carries `/Rotate rotate`
/// (0, 90, 180 or 270).
pub fn image_pdf(image: &Gray, storage: Storage, page_pt: (f32, f32), rotate: i32) -> Vec<u8> {
    let (w, h) = (image.width, image.height);
    assert!(
        w > 0 && h > 0 && image.pixels.len() == w as usize * h as usize,
        "image_pdf needs a non-empty image with width * height pixels, got {w}x{h} and {} pixels",
        image.pixels.len()
    );
    let page_h = page_pt.1;
    let placed: Vec<Placed> = match storage {
        Storage::Jpeg { quality } => {
            vec![(
                image_xobject(w, h, 8, "DCTDecode", jpeg(image, quality)),
                0.0,
                page_h,
            )]
        }
        Storage::FlateGray => vec![(
            image_xobject(w, h, 8, "FlateDecode", zlib(&image.pixels)),
            0.0,
            page_h,
        )],
        Storage::OneBit => vec![(
            image_xobject(w, h, 1, "FlateDecode", zlib(&pack_bits(image))),
            0.0,
            page_h,
        )],
        Storage::CcittG4 => {
            let mut xobject = image_xobject(w, h, 1, "CCITTFaxDecode", ccitt_g4(image));
            xobject.dict.set(
                "DecodeParms",
                dictionary! {
                    "K" => -1,
                    "Columns" => i64::from(w),
                    "Rows" => i64::from(h),
                    "BlackIs1" => false,
                },
            );
            vec![(xobject, 0.0, page_h)]
        }
        Storage::Strips(n) => {
            let n = n.clamp(1, h);
            let row_bytes = w as usize;
            (0..n)
                .map(|i| {
                    let r0 = (u64::from(h) * u64::from(i) / u64::from(n)) as u32;
                    let r1 = (u64::from(h) * u64::from(i + 1) / u64::from(n)) as u32;
                    let rows = &image.pixels[r0 as usize * row_bytes..r1 as usize * row_bytes];
                    let xobject = image_xobject(w, r1 - r0, 8, "FlateDecode", zlib(rows));
                    let bottom = page_h * (h - r1) as f32 / h as f32;
                    (xobject, bottom, page_h * (r1 - r0) as f32 / h as f32)
                })
                .collect()
        }
    };
    one_page_pdf(placed, page_pt, rotate)
}

/// A blank scan: an A4 page whose only content is a 100 dpi image of light
/// grey paper (238) with faint noise (under ±3 levels), `/FlateDecode`.
/// The same bytes every time.
pub fn blank_pdf() -> Vec<u8> {
    let mut rng = SplitMix64(0x00B1_A4C0);
    let (width, height) = (827, 1169);
    let pixels = (0..width * height)
        .map(|_| (238.0 + rng.noise(3.0)).round() as u8)
        .collect();
    image_pdf(
        &Gray {
            width,
            height,
            pixels,
        },
        Storage::FlateGray,
        A4_PT,
        0,
    )
}

/// A decompression bomb: a one-page (A4) image-only PDF whose 8-bit grey
/// `/FlateDecode` image declares `side` x `side` pixels and whose stream
/// really inflates to `side * side` bytes (zeros: a black page), e.g. 3.6 GB
/// for `side` 60000 in a PDF of about 3.5 MB.
///
/// Built in constant memory and little time, never holding the inflated
/// bytes (see [`zlib_zeros`]).
pub fn bomb_pdf(side: u32) -> Vec<u8> {
    let len = u64::from(side) * u64::from(side);
    let xobject = image_xobject(side, side, 8, "FlateDecode", zlib_zeros(len));
    one_page_pdf(vec![(xobject, 0.0, A4_PT.1)], A4_PT, 0)
}

/// Inflated bytes compressed once and repeated by [`zlib_zeros`].
pub(super) const ZEROS_CHUNK: usize = 4 << 20;

/// A zlib stream that inflates to `len` zero bytes, built without ever
/// holding or compressing more than 4 MiB of inflated data; the output is
/// about `len / 1000` bytes.
///
/// Streaming 3.6 GB of zeros through `ZlibEncoder` at the default level
/// would take about 8 s on a 2-core dev machine (measured: 150 ms for 64 MiB
/// in the test profile), so the stream is assembled instead, in about 50 ms
/// for `side` 60000: one 4 MiB chunk of zeros is deflated once (raw, best
/// compression) and ended with a full flush, which byte-aligns the output and
/// clears the history, so those bytes are non-final deflate blocks that refer
/// to nothing before them and are valid anywhere in a deflate stream; they are
/// repeated `len / 4 MiB` times. The remainder is deflated on its own with the
/// final block, and the zlib header and the Adler-32 of `len` zeros
/// (a = 1, b = `len` mod 65521) close the stream. The tests inflate it back.
pub(super) fn zlib_zeros(len: u64) -> Vec<u8> {
    let chunk = ZEROS_CHUNK as u64;
    let zeros = vec![0u8; ZEROS_CHUNK.min(usize::try_from(len).unwrap_or(usize::MAX))];
    let whole = len / chunk;
    let rest = (len % chunk) as usize;
    let block = if whole > 0 {
        deflate_raw(&zeros, FlushCompress::Full)
    } else {
        Vec::new()
    };
    let tail = deflate_raw(&zeros[..rest], FlushCompress::Finish);
    let total = 2 + block.len() as u64 * whole + tail.len() as u64 + 4;
    let mut out =
        Vec::with_capacity(usize::try_from(total).expect("the compressed stream fits in memory"));
    out.extend_from_slice(&[0x78, 0xDA]); // deflate, 32 KiB window, best compression
    for _ in 0..whole {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&tail);
    let b = (len % 65521) as u32;
    out.extend_from_slice(&((b << 16) | 1).to_be_bytes());
    out
}

/// Raw deflate (no zlib header or checksum) of `input` with a fresh
/// compressor, ended by `flush`: `Full` (byte-aligned, non-final, history
/// cleared) or `Finish` (the final block).
pub(super) fn deflate_raw(input: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(input.len() / 512 + 1024);
    loop {
        let consumed = usize::try_from(compress.total_in()).expect("consumed at most the input");
        let status = compress
            .compress_vec(&input[consumed..], &mut out, flush)
            .expect("deflating a buffer in memory");
        let done = if matches!(flush, FlushCompress::Finish) {
            matches!(status, Status::StreamEnd)
        } else {
            // As with zlib: the flush is complete when output space was left over.
            compress.total_in() == input.len() as u64 && out.len() < out.capacity()
        };
        if done {
            return out;
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// An image XObject in `/DeviceGray`.
fn image_xobject(width: u32, height: u32, bits: u8, filter: &str, data: Vec<u8>) -> Stream {
    Stream::new(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Image",
            "Width" => i64::from(width),
            "Height" => i64::from(height),
            "ColorSpace" => "DeviceGray",
            "BitsPerComponent" => i64::from(bits),
            "Filter" => filter,
        },
        data,
    )
    .with_compression(false)
}

/// The one-page PDF drawing each image at its place across the page's width.
fn one_page_pdf(placed: Vec<Placed>, (page_w, page_h): (f32, f32), rotate: i32) -> Vec<u8> {
    assert!(
        matches!(rotate, 0 | 90 | 180 | 270),
        "/Rotate must be 0, 90, 180 or 270, not {rotate}"
    );
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut xobjects = Dictionary::new();
    let mut content = String::new();
    for (i, (xobject, bottom, height)) in placed.into_iter().enumerate() {
        let name = format!("Im{i}");
        content.push_str(&format!(
            "q {page_w} 0 0 {height} 0 {bottom} cm /{name} Do Q\n"
        ));
        xobjects.set(name, doc.add_object(xobject));
    }
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
    let media_box: Vec<Object> = vec![0.into(), 0.into(), page_w.into(), page_h.into()];
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "MediaBox" => media_box,
        "Resources" => dictionary! { "XObject" => xobjects },
        "Contents" => content_id,
        "Rotate" => i64::from(rotate),
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![Object::Reference(page_id)],
            "Count" => 1,
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("writing to a Vec cannot fail");
    out
}

/// zlib at the default level.
fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Baseline grey JPEG.
fn jpeg(image: &Gray, quality: u8) -> Vec<u8> {
    let width = u16::try_from(image.width).expect("a JPEG is at most 65535 pixels wide");
    let height = u16::try_from(image.height).expect("a JPEG is at most 65535 pixels high");
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(&image.pixels, width, height, jpeg_encoder::ColorType::Luma)
        .expect("encoding a grey image of the declared size");
    out
}

/// 1 bit a pixel, most significant first, rows padded to a byte: 1 (white)
/// where the sample is 128 or lighter.
fn pack_bits(image: &Gray) -> Vec<u8> {
    let width = image.width as usize;
    let row_bytes = width.div_ceil(8);
    let mut out = vec![0u8; row_bytes * image.height as usize];
    for (y, row) in image.pixels.chunks_exact(width).enumerate() {
        for (x, &p) in row.iter().enumerate() {
            if p >= 128 {
                out[y * row_bytes + x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    out
}

/// CCITT Group 4 (T.6), ended by EOFB: black where the sample is darker than 128.
fn ccitt_g4(image: &Gray) -> Vec<u8> {
    let mut encoder = fax::encoder::Encoder::new(fax::VecWriter::new());
    for row in image.pixels.chunks_exact(image.width as usize) {
        let pels = row.iter().map(|&p| {
            if p < 128 {
                fax::Color::Black
            } else {
                fax::Color::White
            }
        });
        encoder
            .encode_line(pels, image.width)
            .expect("writing to a VecWriter cannot fail");
    }
    encoder
        .finish()
        .expect("writing to a VecWriter cannot fail")
        .finish()
}
