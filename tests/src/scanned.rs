//! Image-only ("scanned") PDF fixtures that the project builds itself.
//!
//! A page of text is set by [`docsort_worker::offline::samples::text_pdf`] and
//! rasterised with poppler's `pdftoppm` ([`render_text`]), optionally made to
//! look like a scan ([`scanner_like`]), and stored as the only content of a
//! one-page PDF ([`image_pdf`]) in one of the encodings scanners write
//! ([`Storage`]); there is no text layer. [`blank_pdf`] and [`bomb_pdf`] make
//! the two awkward cases: an empty scan and a decompression bomb.
//!
//! Rendering needs poppler-utils (`pdftoppm`); building a PDF from an image
//! needs nothing outside Rust.

use std::io::Write;
use std::process::{Command, Stdio};

use flate2::{Compress, Compression, FlushCompress, Status};
use lopdf::{dictionary, Dictionary, Document, Object, Stream};

/// The page size, in points, of the PDFs that `text_pdf` writes (A4).
pub const A4_PT: (f32, f32) = (595.0, 842.0);

/// An 8-bit grey image, row-major, 0 = black, 255 = white.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gray {
    pub width: u32,
    pub height: u32,
    /// `width * height` samples, top row first.
    pub pixels: Vec<u8>,
}

impl Gray {
    /// An image of one tone.
    pub fn filled(width: u32, height: u32, value: u8) -> Gray {
        Gray {
            width,
            height,
            pixels: vec![value; width as usize * height as usize],
        }
    }

    /// The sample at column `x`, row `y`.
    pub fn pixel(&self, x: u32, y: u32) -> u8 {
        self.pixels[y as usize * self.width as usize + x as usize]
    }

    /// How many samples are darker than `threshold`.
    pub fn count_darker(&self, threshold: u8) -> usize {
        self.pixels.iter().filter(|&&p| p < threshold).count()
    }

    /// Parses a binary PGM (`P5`, as `pdftoppm -gray` writes): the header's
    /// comments are skipped, and a maximum value below 255 is scaled to 255.
    pub fn from_pgm(data: &[u8]) -> Result<Gray, String> {
        if !data.starts_with(b"P5") {
            return Err("not a binary PGM: no P5 magic".into());
        }
        let mut pos = 2;
        let mut fields = [0u32; 3];
        for field in &mut fields {
            loop {
                match data.get(pos) {
                    Some(b) if b.is_ascii_whitespace() => pos += 1,
                    Some(b'#') => {
                        while data.get(pos).is_some_and(|&b| b != b'\n') {
                            pos += 1;
                        }
                    }
                    _ => break,
                }
            }
            let start = pos;
            while data.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            *field = std::str::from_utf8(&data[start..pos])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("PGM header: expected a number at byte {start}"))?;
        }
        let [width, height, maxval] = fields;
        // Exactly one whitespace byte separates the header from the samples.
        if !data.get(pos).is_some_and(u8::is_ascii_whitespace) {
            return Err(format!(
                "PGM header: no whitespace after the maximum value at byte {pos}"
            ));
        }
        pos += 1;
        if maxval == 0 || maxval > 255 {
            return Err(format!(
                "PGM maximum value {maxval}: only 1..=255 (one byte a sample) is read"
            ));
        }
        let len = width as usize * height as usize;
        let body = data.get(pos..pos + len).ok_or_else(|| {
            format!(
                "PGM body: {} bytes, {width}x{height} needs {len}",
                data.len() - pos
            )
        })?;
        let pixels = if maxval == 255 {
            body.to_vec()
        } else {
            body.iter()
                .map(|&v| ((u32::from(v) * 255 + maxval / 2) / maxval).min(255) as u8)
                .collect()
        };
        Ok(Gray {
            width,
            height,
            pixels,
        })
    }

    /// The image as a binary PGM (for tools such as tesseract).
    pub fn to_pgm(&self) -> Vec<u8> {
        let mut out = format!("P5\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.pixels);
        out
    }
}

/// Renders page 1 of `pdf` in grey at `dpi` with
/// `pdftoppm -gray -r DPI -f 1 -l 1` (PDF on stdin, PGM on stdout).
///
/// Panics naming poppler-utils when `pdftoppm` is missing, and with its
/// stderr when it fails.
pub fn rasterize(pdf: &[u8], dpi: u32) -> Gray {
    let spawned = Command::new("pdftoppm")
        .args(["-gray", "-r", &dpi.to_string(), "-f", "1", "-l", "1", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "pdftoppm not found on PATH: install poppler-utils (e.g. `apt-get install poppler-utils`) \
             to render the scanned-PDF fixtures"
        ),
        Err(e) => panic!("starting pdftoppm: {e}"),
    };
    let mut stdin = child.stdin.take().expect("pdftoppm's stdin is piped");
    let output = std::thread::scope(|scope| {
        // A write error means pdftoppm exited early; its status and stderr say why.
        scope.spawn(move || stdin.write_all(pdf));
        child.wait_with_output()
    })
    .expect("waiting for pdftoppm");
    assert!(
        output.status.success(),
        "pdftoppm failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Gray::from_pgm(&output.stdout).unwrap_or_else(|e| panic!("reading pdftoppm's output: {e}"))
}

/// Renders text lines as a page image: the one-page A4 text PDF that
/// `text_pdf(&[lines])` writes (Helvetica 11 pt from the top left), rasterised
/// by [`rasterize`] at `dpi` (at 100 dpi: 827 x 1169 pixels).
///
/// Panics naming poppler-utils when `pdftoppm` is missing.
pub fn render_text(lines: &[String], dpi: u32) -> Gray {
    rasterize(
        &docsort_worker::offline::samples::text_pdf(&[lines.to_vec()]),
        dpi,
    )
}

/// SplitMix64: a tiny seeded generator whose stream is fixed here, so that a
/// fixture is the same for a seed on every machine and every version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }

    /// Triangular noise in (-amplitude, amplitude), peaked at 0.
    fn noise(&mut self, amplitude: f64) -> f64 {
        (self.unit() + self.unit() - 1.0) * amplitude
    }
}

/// The skew [`scanner_like`] gives a page for `seed`, in degrees:
/// 0.5 to 1.5 in size, its sign drawn from the seed too.
pub fn scan_skew_degrees(seed: u64) -> f64 {
    let mut rng = SplitMix64(seed);
    let size = 0.5 + rng.unit();
    if rng.next_u64() & 1 == 0 {
        size
    } else {
        -size
    }
}

/// A scanner-like copy of `image`, the same size: light grey paper (226 to 238,
/// never pure white) with ink a little lighter than black, turned about its
/// centre by [`scan_skew_degrees`]`(seed)` (bilinear; corners that come from
/// outside the original are paper), mild noise (under ±8 levels) and four to
/// eight dark specks. The same `image` and `seed` give the same result.
pub fn scanner_like(image: &Gray, seed: u64) -> Gray {
    let (w, h) = (image.width as usize, image.height as usize);
    if w == 0 || h == 0 {
        return image.clone();
    }
    let degrees = scan_skew_degrees(seed);
    // The skew used the seed's first two draws; the rest of the stream follows.
    let mut rng = SplitMix64(seed);
    rng.next_u64();
    rng.next_u64();
    let paper = 226.0 + 12.0 * rng.unit();
    let ink = 15.0 + 15.0 * rng.unit();
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    // Outside the original is white, which maps to paper below.
    let sample = |x: i64, y: i64| -> f64 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            255.0
        } else {
            f64::from(image.pixels[y as usize * w + x as usize])
        }
    };
    let mut pixels = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            // Where in the original this output pixel comes from (the inverse turn).
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let sx = cos * dx + sin * dy + cx;
            let sy = -sin * dx + cos * dy + cy;
            let (fx, fy) = (sx - sx.floor(), sy - sy.floor());
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            let top = sample(x0, y0) * (1.0 - fx) + sample(x0 + 1, y0) * fx;
            let bottom = sample(x0, y0 + 1) * (1.0 - fx) + sample(x0 + 1, y0 + 1) * fx;
            let value = top * (1.0 - fy) + bottom * fy;
            let tone = ink + (paper - ink) * value / 255.0 + rng.noise(8.0);
            pixels.push(tone.round().clamp(0.0, 255.0) as u8);
        }
    }
    let mut out = Gray {
        width: image.width,
        height: image.height,
        pixels,
    };
    for _ in 0..4 + rng.below(5) {
        let (sx, sy) = (
            i64::from(rng.below(image.width)),
            i64::from(rng.below(image.height)),
        );
        let radius = 1 + i64::from(rng.below(2));
        let value = 30 + rng.below(60) as u8;
        for y in (sy - radius).max(0)..=(sy + radius).min(h as i64 - 1) {
            for x in (sx - radius).max(0)..=(sx + radius).min(w as i64 - 1) {
                if (x - sx).pow(2) + (y - sy).pow(2) <= radius * radius {
                    let p = &mut out.pixels[y as usize * w + x as usize];
                    *p = (*p).min(value);
                }
            }
        }
    }
    out
}

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
const ZEROS_CHUNK: usize = 4 << 20;

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
fn zlib_zeros(len: u64) -> Vec<u8> {
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
fn deflate_raw(input: &[u8], flush: FlushCompress) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::time::Instant;

    /// Whether `tool` runs here; when not, says loudly that the test is skipped.
    fn have(tool: &str, package: &str) -> bool {
        let version_flag = if tool == "tesseract" {
            "--version"
        } else {
            "-v"
        };
        let found = Command::new(tool)
            .arg(version_flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            eprintln!(
                "\n*** SKIPPED: {tool} not found on PATH (install {package}): \
                 the checks that need it did not run. ***\n"
            );
        }
        found
    }

    fn have_poppler() -> bool {
        have("pdftoppm", "poppler-utils")
            && have("pdfimages", "poppler-utils")
            && have("pdftotext", "poppler-utils")
    }

    /// The two-line invoice page at 100 dpi, rendered once.
    fn invoice() -> &'static Gray {
        static PAGE: OnceLock<Gray> = OnceLock::new();
        PAGE.get_or_init(|| render_text(&["INVOICE 1234".into(), "Total due 500.00".into()], 100))
    }

    /// A file in the temp folder, named for this test process, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str, bytes: &[u8]) -> Scratch {
            let path =
                std::env::temp_dir().join(format!("docsort-scanned-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).expect("writing a scratch file");
            Scratch(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("a UTF-8 temp path")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn run(tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .output()
            .expect("running a poppler or tesseract tool");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One row of `pdfimages -list`: width, height, colour, bits a component, encoding.
    #[derive(Debug, PartialEq)]
    struct Listed {
        width: u32,
        height: u32,
        color: String,
        bpc: u32,
        enc: String,
    }

    fn list_images(pdf: &Scratch) -> Vec<Listed> {
        run("pdfimages", &["-list", pdf.path()])
            .lines()
            .skip(2) // the header and its underline
            .map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                assert!(cols.len() >= 9, "pdfimages -list row: {line}");
                Listed {
                    width: cols[3].parse().expect("width"),
                    height: cols[4].parse().expect("height"),
                    color: cols[5].into(),
                    bpc: cols[7].parse().expect("bpc"),
                    enc: cols[8].into(),
                }
            })
            .collect()
    }

    fn text_of(pdf: &Scratch) -> String {
        run("pdftotext", &[pdf.path(), "-"])
    }

    /// The words tesseract reads in `image`.
    fn ocr(name: &str, image: &Gray) -> String {
        let file = Scratch::new(name, &image.to_pgm());
        run("tesseract", &[file.path(), "stdout"])
    }

    /// Builds the invoice page as `storage` with `/Rotate rotate` and checks it
    /// with poppler: one image (or one a strip) with `enc` and `bpc`, covering
    /// the image's size; no text; a rendering at 30 dpi that has ink and the
    /// orientation `rotate` gives. Returns its rendering at 200 dpi.
    fn check(name: &str, storage: Storage, rotate: i32, enc: &str, bpc: u32) -> Option<Gray> {
        if !have_poppler() {
            return None;
        }
        let page = invoice();
        let pdf = image_pdf(page, storage, A4_PT, rotate);
        let path = Scratch::new(&format!("{name}.pdf"), &pdf);

        let listed = list_images(&path);
        let strips = match storage {
            Storage::Strips(n) => n as usize,
            _ => 1,
        };
        assert_eq!(listed.len(), strips, "{name}: images listed {listed:?}");
        for image in &listed {
            assert_eq!(
                (
                    image.width,
                    image.color.as_str(),
                    image.bpc,
                    image.enc.as_str()
                ),
                (page.width, "gray", bpc, enc),
                "{name}: {image:?}"
            );
        }
        assert_eq!(
            listed.iter().map(|i| i.height).sum::<u32>(),
            page.height,
            "{name}: {listed:?}"
        );

        let text = text_of(&path);
        assert!(
            text.trim().is_empty(),
            "{name}: pdftotext found text {text:?}"
        );

        let small = rasterize(&pdf, 30);
        let dark = small.count_darker(160);
        assert!(
            dark >= 20,
            "{name}: the 30 dpi rendering looks blank ({dark} dark pixels)"
        );
        let landscape = small.width > small.height;
        assert_eq!(
            landscape,
            rotate % 180 != 0,
            "{name}: rendered {}x{}",
            small.width,
            small.height
        );
        Some(rasterize(&pdf, 200))
    }

    fn assert_reads_invoice(name: &str, image: &Gray) {
        if !have("tesseract", "tesseract-ocr") {
            return;
        }
        let words = ocr(&format!("{name}.pgm"), image);
        assert!(
            words.contains("INVOICE"),
            "{name}: tesseract read {words:?}"
        );
    }

    #[test]
    fn pgm_parses_comments_and_small_maxima() {
        let image = Gray::from_pgm(b"P5\n# made by hand\n3 2\n# max\n15\n\x00\x0f\x05\x0f\x0f\x00")
            .unwrap();
        assert_eq!((image.width, image.height), (3, 2));
        assert_eq!(image.pixels, [0, 255, 85, 255, 255, 0]);
        let round = Gray::from_pgm(&image.to_pgm()).unwrap();
        assert_eq!(round, image);
        assert!(Gray::from_pgm(b"P6\n1 1\n255\n\x00").is_err());
        assert!(Gray::from_pgm(b"P5\n2 2\n255\n\x00").is_err(), "short body");
        assert!(
            Gray::from_pgm(b"P5\n1 1\n65535\n\x00\x00").is_err(),
            "16-bit samples"
        );
    }

    /// A white page with a black vertical line down the middle.
    fn line_page() -> Gray {
        let mut page = Gray::filled(300, 400, 255);
        for y in 0..400 {
            for x in 149..152 {
                page.pixels[y * 300 + x] = 0;
            }
        }
        page
    }

    /// Where the line crosses rows `y - 5 ..= y + 5`: the mean column of the
    /// inked pixels (darker than 128) near the middle.
    fn line_x(image: &Gray, y: u32) -> f64 {
        let xs: Vec<u32> = (y - 5..=y + 5)
            .flat_map(|y| (130..170).filter(move |&x| image.pixel(x, y) < 128))
            .collect();
        assert!(!xs.is_empty(), "no line near row {y}");
        xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64
    }

    #[test]
    fn scanner_like_is_deterministic_grey_skewed_and_noisy() {
        let page = line_page();
        let a = scanner_like(&page, 7);
        assert_eq!(a, scanner_like(&page, 7), "same seed, same scan");
        assert_ne!(a, scanner_like(&page, 8), "another seed, another scan");
        assert_eq!((a.width, a.height), (page.width, page.height));

        // Paper: light grey, never white, and noisy; corners filled with paper.
        let paper: Vec<u8> = (0..a.height).map(|y| a.pixel(20, y)).collect();
        let mean = paper.iter().map(|&p| f64::from(p)).sum::<f64>() / paper.len() as f64;
        assert!((220.0..246.0).contains(&mean), "paper mean {mean}");
        assert!(!a.pixels.contains(&255), "no pure white");
        assert!(
            paper.iter().min() != paper.iter().max(),
            "noise on the paper"
        );
        for (x, y) in [(0, 0), (299, 0), (0, 399), (299, 399)] {
            assert!(
                a.pixel(x, y) > 200,
                "corner ({x}, {y}) is {}",
                a.pixel(x, y)
            );
        }

        // The line leans by the seed's skew: over 300 rows, 2.6 to 7.9 pixels.
        for seed in 0..16 {
            let scan = scanner_like(&page, seed);
            let degrees = scan_skew_degrees(seed);
            assert!(
                (0.5..1.5).contains(&degrees.abs()),
                "seed {seed}: {degrees} degrees"
            );
            let shift = line_x(&scan, 350) - line_x(&scan, 50);
            let expected = 300.0 * degrees.to_radians().tan();
            // Rows run down the image, so a positive skew leans the line left as it goes down.
            assert!(
                (shift + expected).abs() <= 1.0,
                "seed {seed}: shift {shift}, expected {}",
                -expected
            );
        }
        let signs: Vec<bool> = (0..16).map(|seed| scan_skew_degrees(seed) > 0.0).collect();
        assert!(
            signs.contains(&true) && signs.contains(&false),
            "both directions of skew occur"
        );
    }

    #[test]
    fn jpeg_page() {
        check("jpeg", Storage::Jpeg { quality: 75 }, 0, "jpeg", 8);
    }

    #[test]
    fn flate_gray_page_reads_back() {
        if let Some(rendered) = check("flate-gray", Storage::FlateGray, 0, "image", 8) {
            assert_reads_invoice("flate-gray", &rendered);
        }
    }

    #[test]
    fn one_bit_page() {
        check("one-bit", Storage::OneBit, 0, "image", 1);
    }

    #[test]
    fn ccitt_page_reads_back() {
        if let Some(rendered) = check("ccitt", Storage::CcittG4, 0, "ccitt", 1) {
            assert_reads_invoice("ccitt", &rendered);
        }
    }

    #[test]
    fn strips_page() {
        check("strips", Storage::Strips(7), 0, "image", 8);
    }

    #[test]
    fn rotated_pages() {
        for rotate in [90, 180, 270] {
            check(
                &format!("rotate-{rotate}"),
                Storage::FlateGray,
                rotate,
                "image",
                8,
            );
        }
    }

    #[test]
    fn scanner_like_page_reads_back() {
        if !have_poppler() {
            return;
        }
        let scan = scanner_like(invoice(), 42);
        let pdf = image_pdf(&scan, Storage::Jpeg { quality: 60 }, A4_PT, 0);
        let path = Scratch::new("scanner-like.pdf", &pdf);
        assert!(text_of(&path).trim().is_empty());
        assert_reads_invoice("scanner-like", &rasterize(&pdf, 200));
    }

    #[test]
    fn blank_page_has_no_ink_and_no_text() {
        let pdf = blank_pdf();
        assert_eq!(pdf, blank_pdf(), "the same bytes every time");
        if !have_poppler() {
            return;
        }
        let path = Scratch::new("blank.pdf", &pdf);
        assert_eq!(
            list_images(&path),
            [Listed {
                width: 827,
                height: 1169,
                color: "gray".into(),
                bpc: 8,
                enc: "image".into()
            }]
        );
        assert!(text_of(&path).trim().is_empty());
        let page = rasterize(&pdf, 30);
        let (min, max) = (
            page.pixels.iter().min().unwrap(),
            page.pixels.iter().max().unwrap(),
        );
        assert!(*min >= 230 && *max < 255, "blank page tones {min}..={max}");
    }

    /// Inflates a zlib stream chunk by chunk (the Adler-32 is checked at the
    /// end), returning how many bytes came out and whether all were zero.
    fn inflate_count(stream: &[u8]) -> (u64, bool) {
        let mut decoder = flate2::read::ZlibDecoder::new(stream);
        let mut buf = vec![0u8; 1 << 20];
        let (mut total, mut zeros) = (0u64, true);
        loop {
            let n = decoder
                .read(&mut buf)
                .expect("the stream inflates, checksum included");
            if n == 0 {
                return (total, zeros);
            }
            zeros &= buf[..n].iter().all(|&b| b == 0);
            total += n as u64;
        }
    }

    #[test]
    fn zeros_stream_inflates_to_its_length() {
        let chunk = ZEROS_CHUNK as u64;
        for len in [0, 1, 65521, chunk - 1, chunk, chunk + 1, 3 * chunk + 12345] {
            let stream = zlib_zeros(len);
            assert_eq!(inflate_count(&stream), (len, true), "len {len}");
        }
        let block = deflate_raw(&vec![0; ZEROS_CHUNK], FlushCompress::Full);
        assert!(
            block.ends_with(&[0, 0, 0xFF, 0xFF]),
            "a full flush ends with an empty stored block"
        );
    }

    /// The image stream of a one-image PDF.
    fn only_image(pdf: &[u8]) -> Stream {
        let doc = Document::load_mem(pdf).expect("lopdf reads the PDF");
        let mut images = doc.objects.values().filter_map(|o| match o {
            Object::Stream(s)
                if s.dict.get(b"Subtype").ok().and_then(|v| v.as_name().ok()) == Some(b"Image") =>
            {
                Some(s.clone())
            }
            _ => None,
        });
        let image = images.next().expect("an image XObject");
        assert!(images.next().is_none(), "one image only");
        image
    }

    #[test]
    fn small_bomb_inflates_to_its_declared_size() {
        let side = 4099; // 16.8 MB: four whole chunks and a remainder
        let pdf = bomb_pdf(side);
        let image = only_image(&pdf);
        assert_eq!(
            image.dict.get(b"Width").unwrap().as_i64().unwrap(),
            i64::from(side)
        );
        assert_eq!(
            image.dict.get(b"Height").unwrap().as_i64().unwrap(),
            i64::from(side)
        );
        assert_eq!(
            inflate_count(&image.content),
            (u64::from(side) * u64::from(side), true)
        );
        if have_poppler() {
            let path = Scratch::new("bomb-small.pdf", &pdf);
            assert_eq!(
                list_images(&path),
                [Listed {
                    width: side,
                    height: side,
                    color: "gray".into(),
                    bpc: 8,
                    enc: "image".into()
                }]
            );
            assert!(text_of(&path).trim().is_empty());
        }
    }

    #[test]
    fn bomb_60000_builds_quickly() {
        let started = Instant::now();
        let pdf = bomb_pdf(60_000);
        let took = started.elapsed();
        eprintln!("bomb_pdf(60000): {} bytes in {took:.2?}", pdf.len());
        assert!(
            (1_000_000..8_000_000).contains(&pdf.len()),
            "bomb of {} bytes",
            pdf.len()
        );
        let image = only_image(&pdf);
        assert_eq!(image.dict.get(b"Width").unwrap().as_i64().unwrap(), 60_000);
        if have_poppler() {
            let path = Scratch::new("bomb-60000.pdf", &pdf);
            assert_eq!(
                list_images(&path),
                [Listed {
                    width: 60_000,
                    height: 60_000,
                    color: "gray".into(),
                    bpc: 8,
                    enc: "image".into()
                }]
            );
        }
    }

    #[test]
    #[ignore = "inflates 3.6 GB: about 30 s in the test profile"]
    fn bomb_60000_inflates_fully() {
        let image = only_image(&bomb_pdf(60_000));
        assert_eq!(inflate_count(&image.content), (3_600_000_000, true));
    }
}
