//! Grey rasters: reading PGM, rendering a PDF page with `pdftoppm`, setting
//! text on a page, and the scanner look (paper tone, skew, noise).

use std::io::Write;
use std::process::{Command, Stdio};

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
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }

    /// Triangular noise in (-amplitude, amplitude), peaked at 0.
    pub(super) fn noise(&mut self, amplitude: f64) -> f64 {
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
