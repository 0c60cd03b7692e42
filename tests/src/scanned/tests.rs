//! The fixtures checked with poppler's own tools (and tesseract where present).

use super::pdf::{deflate_raw, zlib_zeros, ZEROS_CHUNK};
use super::*;
use flate2::FlushCompress;
use lopdf::{Document, Object, Stream};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
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
    let image =
        Gray::from_pgm(b"P5\n# made by hand\n3 2\n# max\n15\n\x00\x0f\x05\x0f\x0f\x00").unwrap();
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
