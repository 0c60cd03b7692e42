//! The first page as a picture, for documents whose first pages carry no
//! usable text: rendered by poppler's `pdftoppm` (a real renderer, so every
//! image filter PDF allows, JBIG2 and CCITT included, strips, masks, vector
//! drawings and `/Rotate` come out as a person sees the page), then either
//! kept as a PNG sized for Claude's vision ([`Fallback::PageImage`]) or read
//! by Tesseract ([`Fallback::Ocr`]).
//!
//! Bounds and honesty:
//! - this runs inside the extraction child, so `pdftoppm` and `tesseract`
//!   inherit its address-space ceiling, and die with it at the time cap;
//! - an image whose declared pixels exceed [`MAX_IMAGE_PIXELS`] (a
//!   decompression bomb) is refused before anything is decoded;
//! - a blank or near-uniform page is `no_text`: nothing a person could not
//!   read is sent to a model.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use lopdf::{Dictionary, Document, Object, ObjectId};
use serde::{Deserialize, Serialize};

use super::document::ExtractError;
use super::objects::{array, dict, num};

/// What the extractor does when the first pages have no usable text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Nothing: the document is `failed/no_text`.
    #[default]
    None,
    /// The first page as a PNG for a model that reads images (Bedrock).
    PageImage,
    /// The first page read by Tesseract, for a text-only model (local).
    Ocr,
}

impl Fallback {
    /// The value of `extract-child --fallback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::None => "none",
            Fallback::PageImage => "page-image",
            Fallback::Ocr => "ocr",
        }
    }

    /// Parses [`Fallback::as_str`]'s values.
    pub fn parse(value: &str) -> Option<Self> {
        [Fallback::None, Fallback::PageImage, Fallback::Ocr]
            .into_iter()
            .find(|f| f.as_str() == value)
    }
}

/// Below this many non-whitespace characters, the text layer is not enough to
/// classify by: a page number, a scanner's stamp or a caption over a picture
/// (in the corpus, 36 of 185 files with a text layer have fewer, nearly all
/// pictures or broken test files); the page image says more.
pub const MIN_TEXT_CHARS: u64 = 32;
/// Claude reads images best at most this long on their long edge...
pub const MODEL_LONG_EDGE: u32 = 1568;
/// ...and at most about this many pixels (about 1,533 input tokens).
pub const MODEL_MAX_PIXELS: f64 = 1_150_000.0;
/// Tesseract reads best at about 200-300 dpi: a Letter page at 200 dpi is 2200 px long.
pub const OCR_LONG_EDGE: u32 = 2200;
/// Largest image (declared width x height) decoded: a 600 dpi A3 scan is 70 MP.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;
/// A page with less ink than this fraction of its pixels is blank.
const BLANK_INK_FRACTION: f64 = 0.0005;
/// A pixel this many grey levels away from the page's background is ink.
const INK_CONTRAST: u8 = 80;
/// Letters or digits OCR must find for its text to be used: one short word.
/// Tesseract reads nothing at all in the corpus's photos and drawings, and the
/// speech bubble of `pdf-with-jbig2` ("It Doesn't Work?!") as 9 of them.
const MIN_OCR_CHARS: usize = 4;

/// A rendered page image sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageImage {
    /// PNG bytes (8-bit grey).
    #[serde(with = "base64")]
    pub png: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// An 8-bit grey raster, row-major.
struct Gray {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// The first page as `fallback` asks: a PNG for the model, or OCR text.
pub(super) enum FirstPage {
    Image(PageImage),
    Text(String),
}

/// Reads the first page of `doc` (whose bytes are `bytes`) as `fallback` says.
pub(super) fn read_first_page(
    doc: &Document,
    bytes: &[u8],
    fallback: Fallback,
    pages: u32,
) -> Result<FirstPage, ExtractError> {
    let first = doc
        .get_pages()
        .into_values()
        .next()
        .ok_or_else(|| ExtractError::Malformed("the page tree has no readable pages".into()))?;
    if let Some((width, height)) = largest_image(doc, first) {
        if width.saturating_mul(height) > MAX_IMAGE_PIXELS {
            return Err(ExtractError::ImageTooLarge { width, height });
        }
    }
    let (w, h) = page_size(doc, first);
    let long_edge = match fallback {
        Fallback::Ocr => OCR_LONG_EDGE,
        _ => model_long_edge(w, h),
    };
    let page = render(bytes, long_edge)?;
    if is_blank(&page) {
        return Err(ExtractError::BlankPage { pages });
    }
    match fallback {
        Fallback::Ocr => {
            let text = ocr(&page)?;
            if text.chars().filter(|c| c.is_alphanumeric()).count() < MIN_OCR_CHARS {
                return Err(ExtractError::OcrFoundNothing { pages });
            }
            Ok(FirstPage::Text(text))
        }
        _ => Ok(FirstPage::Image(PageImage {
            png: to_png(&page)?,
            width: page.width,
            height: page.height,
        })),
    }
}

/// The long edge, in pixels, that gives at most [`MODEL_LONG_EDGE`] and
/// [`MODEL_MAX_PIXELS`] for a page of `w` x `h` points.
pub fn model_long_edge(w: f32, h: f32) -> u32 {
    let (long, short) = (w.max(h).max(1.0), w.min(h).max(1.0));
    let by_area = (MODEL_MAX_PIXELS * f64::from(long) / f64::from(short)).sqrt();
    (by_area.floor() as u32).min(MODEL_LONG_EDGE)
}

/// The page's visible size in points (CropBox, else MediaBox, inherited;
/// Letter when neither can be read).
fn page_size(doc: &Document, page: ObjectId) -> (f32, f32) {
    let mut node = doc.get_dictionary(page).ok();
    let mut depth = 0;
    while let Some(d) = node {
        for key in [b"CropBox".as_slice(), b"MediaBox"] {
            if let Some([x0, y0, x1, y1]) =
                d.get(key).ok().and_then(|o| array(doc, o)).and_then(|a| {
                    let v: Vec<f32> = a.iter().filter_map(num).collect();
                    <[f32; 4]>::try_from(v).ok()
                })
            {
                let (w, h) = ((x1 - x0).abs(), (y1 - y0).abs());
                if w >= 1.0 && h >= 1.0 {
                    return (w, h);
                }
            }
        }
        depth += 1;
        node = d
            .get(b"Parent")
            .ok()
            .and_then(|p| dict(doc, p))
            .filter(|_| depth < 32);
    }
    (612.0, 792.0)
}

/// The largest image (declared width, height) drawn from the page's
/// resources, looking into form XObjects two levels deep.
fn largest_image(doc: &Document, page: ObjectId) -> Option<(u64, u64)> {
    let (own, inherited) = doc.get_page_resources(page).ok()?;
    let mut best: Option<(u64, u64)> = None;
    let mut visit = |resources: &Dictionary| {
        let mut stack = vec![(resources.clone(), 0)];
        while let Some((res, depth)) = stack.pop() {
            let Some(xobjects) = res.get(b"XObject").ok().and_then(|o| dict(doc, o)) else {
                continue;
            };
            for (_, xobject) in xobjects.iter() {
                let Some(x) = dict(doc, xobject) else {
                    continue;
                };
                match x.get(b"Subtype").and_then(Object::as_name) {
                    Ok(b"Image") => {
                        let side =
                            |k: &[u8]| x.get(k).ok().and_then(num).map(|v| v.max(0.0) as u64);
                        if let (Some(w), Some(h)) = (side(b"Width"), side(b"Height")) {
                            if best.is_none_or(|(bw, bh)| w.saturating_mul(h) > bw * bh) {
                                best = Some((w, h));
                            }
                        }
                    }
                    Ok(b"Form") if depth < 2 => {
                        if let Some(r) = x.get(b"Resources").ok().and_then(|o| dict(doc, o)) {
                            stack.push((r.clone(), depth + 1));
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    if let Some(r) = own {
        visit(r);
    }
    for id in inherited {
        if let Ok(r) = doc.get_dictionary(id) {
            visit(r);
        }
    }
    best
}

/// Runs `program` with `args`, `input` on its standard input, and returns its
/// standard output. It dies with this process (the extraction child).
fn run_tool(
    program: &str,
    package: &'static str,
    args: &[&str],
    envs: &[(&str, &str)],
    input: &[u8],
) -> Result<Vec<u8>, ExtractError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; it runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ExtractError::ToolMissing {
            tool: program.to_owned(),
            package: package.to_owned(),
        },
        _ => ExtractError::Render(format!("{program} could not start: {e}")),
    })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (out, err) = std::thread::scope(|s| {
        s.spawn(move || {
            // A tool that stops reading early shows that in its exit status.
            let _ = stdin.write_all(input);
        });
        let err = s.spawn(move || {
            let mut err = Vec::new();
            let _ = stderr.read_to_end(&mut err);
            err
        });
        let mut out = Vec::new();
        let read = stdout.read_to_end(&mut out);
        (read.map(|_| out), err.join().unwrap_or_default())
    });
    let status = child
        .wait()
        .map_err(|e| ExtractError::Render(format!("{program} could not be waited for: {e}")))?;
    let err = String::from_utf8_lossy(&err);
    let out = out.map_err(|e| ExtractError::Render(format!("{program}'s output: {e}")))?;
    if status.success() {
        return Ok(out);
    }
    if err.contains("memory") || err.contains("bad_alloc") {
        return Err(ExtractError::ToolMemory {
            tool: program.to_owned(),
        });
    }
    Err(ExtractError::Render(format!(
        "{program} failed ({status}){}",
        super::isolation::last_words(&err)
    )))
}

/// Page 1 rendered grey with its long edge `long_edge` pixels.
fn render(pdf: &[u8], long_edge: u32) -> Result<Gray, ExtractError> {
    let edge = long_edge.to_string();
    let pgm = run_tool(
        "pdftoppm",
        "poppler-utils",
        &["-gray", "-f", "1", "-l", "1", "-scale-to", &edge, "-"],
        &[],
        pdf,
    )?;
    parse_pgm(&pgm).ok_or_else(|| ExtractError::Render("pdftoppm wrote no page image".into()))
}

/// A binary PGM (`P5`, 8-bit).
fn parse_pgm(data: &[u8]) -> Option<Gray> {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while data.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        if data[i] == b'#' {
            while *data.get(i)? != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while !data.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        fields.push(std::str::from_utf8(&data[start..i]).ok()?);
    }
    let (width, height, max): (u32, u32, u32) = (
        fields[1].parse().ok()?,
        fields[2].parse().ok()?,
        fields[3].parse().ok()?,
    );
    if fields[0] != "P5" || max != 255 {
        return None;
    }
    let len = usize::try_from(u64::from(width) * u64::from(height)).ok()?;
    let pixels = data.get(i + 1..i + 1 + len)?.to_vec();
    Some(Gray {
        width,
        height,
        pixels,
    })
}

/// Whether the page has next to no ink: pixels far from its background grey.
fn is_blank(page: &Gray) -> bool {
    let mut histogram = [0u64; 256];
    for &p in &page.pixels {
        histogram[usize::from(p)] += 1;
    }
    let background = (0..=255u8)
        .max_by_key(|&v| histogram[usize::from(v)])
        .unwrap_or(255);
    let ink: u64 = (0..=255u8)
        .filter(|&v| v.abs_diff(background) >= INK_CONTRAST)
        .map(|v| histogram[usize::from(v)])
        .sum();
    (ink as f64) < BLANK_INK_FRACTION * page.pixels.len().max(1) as f64
}

fn to_png(page: &Gray) -> Result<Vec<u8>, ExtractError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, page.width, page.height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let encoded = encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&page.pixels));
    encoded.map_err(|e| ExtractError::Render(format!("the page image cannot be encoded: {e}")))?;
    Ok(out)
}

/// Tesseract's reading of `page` (English, automatic page segmentation, one
/// thread: the pool runs documents side by side).
fn ocr(page: &Gray) -> Result<String, ExtractError> {
    let mut pgm = format!("P5\n{} {}\n255\n", page.width, page.height).into_bytes();
    pgm.extend_from_slice(&page.pixels);
    let text = run_tool(
        "tesseract",
        "tesseract-ocr and tesseract-ocr-eng",
        &["stdin", "stdout", "-l", "eng", "--psm", "3"],
        &[("OMP_THREAD_LIMIT", "1")],
        &pgm,
    )?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

mod base64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&aws_smithy_types::base64::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        aws_smithy_types::base64::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_image_fits_claude_s_limits_and_stays_legible() {
        for (w, h) in [
            (612.0, 792.0),
            (595.0, 842.0),
            (792.0, 612.0),
            (200.0, 2000.0),
            (100.0, 100.0),
        ] {
            let long = model_long_edge(w, h);
            let short = (f64::from(long) * f64::from(w.min(h)) / f64::from(w.max(h))).round();
            assert!(long <= MODEL_LONG_EDGE, "{w}x{h}: {long}");
            assert!(
                f64::from(long) * short <= MODEL_MAX_PIXELS * 1.01,
                "{w}x{h}: {long}x{short}"
            );
            // Legible: within 10% of the pixel budget, or at the long-edge cap.
            assert!(
                long == MODEL_LONG_EDGE || f64::from(long) * short >= MODEL_MAX_PIXELS * 0.9,
                "{w}x{h}"
            );
        }
        // Letter: 943 x 1220 px, about 110 dpi.
        assert_eq!(model_long_edge(612.0, 792.0), 1219);
    }

    #[test]
    fn a_page_is_blank_only_without_ink() {
        let mut page = Gray {
            width: 100,
            height: 100,
            pixels: vec![235; 10_000],
        };
        // Scanner noise (±20 levels) is not ink.
        for (i, p) in page.pixels.iter_mut().enumerate() {
            *p = 225 + (i * 7919 % 21) as u8;
        }
        assert!(is_blank(&page));
        // Ten dark pixels out of 10,000 (0.1%) are.
        for p in page.pixels.iter_mut().take(10) {
            *p = 20;
        }
        assert!(!is_blank(&page));
    }

    #[test]
    fn pgm_headers_with_comments_parse() {
        let mut data = b"P5\n# made by a test\n3 2\n255\n".to_vec();
        data.extend([0, 1, 2, 3, 4, 5]);
        let g = parse_pgm(&data).expect("a valid PGM");
        assert_eq!(
            (g.width, g.height, g.pixels),
            (3, 2, vec![0, 1, 2, 3, 4, 5])
        );
        assert!(parse_pgm(b"P5\n3 2\n255\n\x00").is_none(), "short data");
        assert!(parse_pgm(b"P6\n1 1\n255\n\x00\x00\x00").is_none(), "colour");
    }
}
