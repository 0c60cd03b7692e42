//! docsort's PDF text extractor: lopdf parses, this module interprets.
//!
//! It runs each page's content stream through a small text-state machine
//! (CTM with q/Q, text and line matrices, Tc/Tw/Tz/TL/Ts, Tf), recursing into
//! Form XObjects (with a cycle guard and a depth limit). Every glyph is
//! decoded through its font (ToUnicode CMap first, then the simple-font
//! encoding with Differences) and placed by its advance width (Widths, or W/DW
//! for CID fonts), so word spaces and line breaks come from where glyphs land,
//! not from the order of strings. Lines whose letters are mostly right-to-left
//! are turned from visual into logical order. Pages are read in order and
//! extraction stops once the text budget is full.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};

type Matrix = [f32; 6];
const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
/// Form XObjects nested deeper than this are skipped.
const MAX_FORM_DEPTH: usize = 12;
/// Decompressed content per stream, at most.
const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;

/// `a × b` (PDF row-vector convention: apply `a`, then `b`).
fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

fn num(o: &Object) -> Option<f32> {
    match o {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) => Some(*r),
        _ => None,
    }
}

fn nums<const N: usize>(ops: &[Object]) -> Option<[f32; N]> {
    if ops.len() < N {
        return None;
    }
    let mut out = [0.0; N];
    for (i, o) in ops[ops.len() - N..].iter().enumerate() {
        out[i] = num(o)?;
    }
    Some(out)
}

/// Glyph advance widths of a font, in thousandths of text space.
enum Widths {
    Simple {
        first: u32,
        widths: Vec<f32>,
        missing: f32,
    },
    Cid {
        default: f32,
        map: HashMap<u32, f32>,
    },
}

impl Widths {
    fn get(&self, code: u32) -> f32 {
        match self {
            Widths::Simple {
                first,
                widths,
                missing,
            } => code
                .checked_sub(*first)
                .and_then(|i| widths.get(i as usize))
                .copied()
                .filter(|w| *w > 0.0)
                .unwrap_or(*missing),
            Widths::Cid { default, map } => map.get(&code).copied().unwrap_or(*default),
        }
    }
}

/// A predefined CMap whose codes are a legacy CJK encoding or UTF-16.
#[derive(Clone, Copy)]
enum Predefined {
    /// `Uni*-UCS2-*` / `Uni*-UTF16-*`: codes are UTF-16BE.
    Utf16,
    /// Shift-JIS, EUC, GBK, Big5 or UHC codes: one byte below 0x80, else two.
    Legacy(&'static encoding_rs::Encoding),
}

impl Predefined {
    fn from_name(name: &[u8]) -> Option<Self> {
        let name = std::str::from_utf8(name).ok()?;
        if name.starts_with("Uni") && (name.contains("UCS2") || name.contains("UTF16")) {
            return Some(Predefined::Utf16);
        }
        let family = name.trim_end_matches("-H").trim_end_matches("-V");
        let encoding = match family {
            "90ms-RKSJ" | "90msp-RKSJ" | "83pv-RKSJ" | "90pv-RKSJ" | "78-RKSJ" | "Ext-RKSJ"
            | "Add-RKSJ" => encoding_rs::SHIFT_JIS,
            "EUC" | "78-EUC" | "Ext-EUC" => encoding_rs::EUC_JP,
            "GB-EUC" | "GBpc-EUC" | "GBK-EUC" | "GBKp-EUC" | "GBK2K" => encoding_rs::GBK,
            "B5pc" | "ETen-B5" | "HKscs-B5" | "ETenms-B5" | "B5" => encoding_rs::BIG5,
            "KSC-EUC" | "KSCms-UHC" | "KSCpc-EUC" | "KSCms-UHC-HW" => encoding_rs::EUC_KR,
            _ => return None,
        };
        Some(Predefined::Legacy(encoding))
    }

    /// Splits a string into codes.
    fn split<'b>(&self, bytes: &'b [u8]) -> Vec<&'b [u8]> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let len = match self {
                Predefined::Utf16 => 2,
                Predefined::Legacy(e) if *e == encoding_rs::SHIFT_JIS => {
                    if matches!(bytes[i], 0x81..=0x9F | 0xE0..=0xFC) {
                        2
                    } else {
                        1
                    }
                }
                Predefined::Legacy(_) => {
                    if bytes[i] >= 0x81 {
                        2
                    } else {
                        1
                    }
                }
            };
            let end = (i + len).min(bytes.len());
            out.push(&bytes[i..end]);
            i = end;
        }
        out
    }

    fn decode(&self, code: &[u8], out: &mut String) {
        let encoding = match self {
            Predefined::Utf16 => encoding_rs::UTF_16BE,
            Predefined::Legacy(e) => e,
        };
        out.push_str(&encoding.decode_without_bom_handling(code).0);
    }
}

/// A simple font's code -> text table: base encoding plus Differences, where
/// unknown glyph names leave a gap instead of spoiling the whole font.
type SimpleTable = Box<[Option<char>; 256]>;

/// Decodes one byte through a throwaway font dictionary whose /Encoding is
/// `encoding` (lopdf keeps its glyph-name and base-encoding tables private).
fn decode_with(doc: &Document, encoding: Object, byte: u8) -> Option<char> {
    let mut font = Dictionary::new();
    font.set("Type", Object::Name(b"Font".to_vec()));
    font.set("Encoding", encoding);
    let enc = font.get_font_encoding(doc).ok()?;
    let text = enc.bytes_to_string(&[byte]).ok()?;
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c != '\u{fffd}' && c != '\0' => Some(c),
        _ => None,
    }
}

/// The character a glyph name stands for: `uniXXXX`, `uXXXX[XX]`, or an Adobe
/// Glyph List name (through lopdf); `None` for names like `g18` or `.notdef`.
fn glyph_char(doc: &Document, name: &[u8]) -> Option<char> {
    if let Ok(n) = std::str::from_utf8(name) {
        let hex = n
            .strip_prefix("uni")
            .filter(|h| h.len() >= 4)
            .map(|h| &h[..4])
            .or_else(|| n.strip_prefix('u').filter(|h| (4..=6).contains(&h.len())));
        if let Some(c) = hex
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
        {
            return Some(c);
        }
    }
    if name.starts_with(b".") {
        return None;
    }
    let mut diff = Dictionary::new();
    diff.set(
        "Differences",
        Object::Array(vec![Object::Integer(65), Object::Name(name.to_vec())]),
    );
    decode_with(doc, Object::Dictionary(diff), 65)
}

fn simple_table(doc: &Document, font: &Dictionary) -> SimpleTable {
    let symbol = font
        .get(b"BaseFont")
        .and_then(Object::as_name)
        .is_ok_and(|n| n.ends_with(b"Symbol"));
    let known = |n: &[u8]| {
        matches!(
            n,
            b"WinAnsiEncoding" | b"MacRomanEncoding" | b"MacExpertEncoding" | b"StandardEncoding"
        )
    };
    let mut base: Vec<u8> = if symbol {
        b"SymbolEncoding".to_vec()
    } else {
        b"StandardEncoding".to_vec()
    };
    let encoding = font
        .get(b"Encoding")
        .ok()
        .and_then(|o| doc.dereference(o).ok())
        .map(|(_, o)| o);
    let mut differences: Option<&Vec<Object>> = None;
    match encoding {
        Some(Object::Name(name)) if known(name) => base = name.clone(),
        Some(Object::Dictionary(d)) => {
            if let Ok(name) = d.get(b"BaseEncoding").and_then(Object::as_name) {
                if known(name) {
                    base = name.to_vec();
                }
            }
            differences = d.get(b"Differences").ok().and_then(|o| array(doc, o));
        }
        _ => {}
    }
    let mut table: SimpleTable = Box::new([None; 256]);
    if base != b"SymbolEncoding" {
        for code in 0..=255u8 {
            table[usize::from(code)] = decode_with(doc, Object::Name(base.clone()), code);
        }
    }
    let mut code = 0usize;
    for item in differences.into_iter().flatten() {
        match item {
            Object::Integer(i) => code = usize::try_from(*i).unwrap_or(256),
            Object::Name(name) => {
                if code < 256 {
                    table[code] = glyph_char(doc, name);
                }
                code += 1;
            }
            _ => {}
        }
    }
    table
}

/// What the extractor needs of a font.
struct Font<'a> {
    encoding: Option<Encoding<'a>>,
    /// Simple fonts: the code table (used when there is no ToUnicode, or it lacks a code).
    simple: Option<SimpleTable>,
    /// Codes of a predefined CJK CMap (no ToUnicode).
    predefined: Option<Predefined>,
    /// Codes are two bytes (Type0 / CID fonts).
    two_byte: bool,
    widths: Widths,
    /// Glyph space to text space (1/1000 except Type3).
    scale: f32,
}

impl Font<'_> {
    fn decode(&self, code: &[u8], out: &mut String) {
        if let Some(p) = &self.predefined {
            p.decode(code, out);
            return;
        }
        let start = out.len();
        if let Some(enc @ Encoding::UnicodeMapEncoding(_)) = &self.encoding {
            if enc.write_to_string(code, out).is_ok()
                && !out[start..].is_empty()
                && !out[start..].contains('\u{fffd}')
            {
                return;
            }
            out.truncate(start);
        }
        if let (Some(table), [byte]) = (&self.simple, code) {
            if let Some(c) = table[usize::from(*byte)] {
                out.push(c);
            }
            return;
        }
        if let Some(enc) = &self.encoding {
            if enc.write_to_string(code, out).is_err() {
                out.truncate(start);
            }
        }
    }
}

fn dict<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Dictionary> {
    match o {
        Object::Dictionary(d) => Some(d),
        Object::Reference(id) => doc.get_dictionary(*id).ok(),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    }
}

fn array<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Vec<Object>> {
    match o {
        Object::Array(a) => Some(a),
        Object::Reference(id) => doc.get_object(*id).ok().and_then(|o| o.as_array().ok()),
        _ => None,
    }
}

fn load_font<'a>(doc: &'a Document, font: &'a Dictionary) -> Font<'a> {
    let subtype = font
        .get(b"Subtype")
        .and_then(Object::as_name)
        .unwrap_or(b"");
    let two_byte = subtype == b"Type0";
    // ToUnicode first (lopdf prefers /Encoding when both exist, which loses
    // the font's own mapping), then the simple-font encoding.
    let has_to_unicode = font.get(b"ToUnicode").is_ok();
    let encoding = if has_to_unicode {
        let mut only_to_unicode = font.clone();
        only_to_unicode.remove(b"Encoding");
        // The clone must outlive the encoding: leak-free by converting the
        // CMap into an owned encoding right away.
        match only_to_unicode.get_font_encoding(doc) {
            Ok(Encoding::UnicodeMapEncoding(cmap)) => Some(Encoding::UnicodeMapEncoding(cmap)),
            _ => font.get_font_encoding(doc).ok(),
        }
    } else {
        font.get_font_encoding(doc).ok()
    };
    let predefined = match (&encoding, has_to_unicode) {
        (Some(Encoding::SimpleEncoding(name)), false) => Predefined::from_name(name),
        _ => None,
    };
    let encoding = match encoding {
        // A simple encoding lopdf cannot decode (predefined CJK CMaps) yields nothing.
        Some(Encoding::SimpleEncoding(name)) if name != b"WinAnsiEncoding" => None,
        // Two-byte codes without a ToUnicode map: lopdf falls back to a one-byte
        // encoding, which would produce garbage.
        Some(Encoding::OneByteEncoding(_)) | Some(Encoding::Differences(_)) if two_byte => None,
        other => other,
    };
    let mut scale = 0.001;
    let widths = if two_byte {
        let descendant = font
            .get(b"DescendantFonts")
            .ok()
            .and_then(|o| array(doc, o))
            .and_then(|a| a.first())
            .and_then(|o| dict(doc, o));
        let default = descendant
            .and_then(|d| d.get(b"DW").ok())
            .and_then(num)
            .unwrap_or(1000.0);
        let mut map = HashMap::new();
        if let Some(w) = descendant
            .and_then(|d| d.get(b"W").ok())
            .and_then(|o| array(doc, o))
        {
            let mut i = 0;
            while i + 1 < w.len() {
                let Some(first) = num(&w[i]) else { break };
                let first = first as u32;
                if let Some(list) = array(doc, &w[i + 1]) {
                    for (k, v) in list.iter().enumerate() {
                        if let Some(v) = num(v) {
                            map.insert(first + k as u32, v);
                        }
                    }
                    i += 2;
                } else if i + 2 < w.len() {
                    if let (Some(last), Some(v)) = (num(&w[i + 1]), num(&w[i + 2])) {
                        for c in first..=(last as u32).min(first + 65535) {
                            map.insert(c, v);
                        }
                    }
                    i += 3;
                } else {
                    break;
                }
            }
        }
        Widths::Cid { default, map }
    } else {
        if subtype == b"Type3" {
            if let Some(m) = font
                .get(b"FontMatrix")
                .ok()
                .and_then(|o| array(doc, o))
                .and_then(|a| a.first())
                .and_then(num)
            {
                scale = m;
            }
        }
        let first = font.get(b"FirstChar").ok().and_then(num).unwrap_or(0.0) as u32;
        let widths: Vec<f32> = font
            .get(b"Widths")
            .ok()
            .and_then(|o| array(doc, o))
            .map(|a| a.iter().map(|o| num(o).unwrap_or(0.0)).collect())
            .unwrap_or_default();
        let missing = font
            .get(b"FontDescriptor")
            .ok()
            .and_then(|o| dict(doc, o))
            .and_then(|d| {
                d.get(b"MissingWidth")
                    .ok()
                    .and_then(num)
                    .or_else(|| d.get(b"AvgWidth").ok().and_then(num))
            })
            .filter(|w| *w > 0.0)
            .unwrap_or(if subtype == b"Type3" { 0.0 } else { 500.0 });
        Widths::Simple {
            first,
            widths,
            missing,
        }
    };
    let simple = (!two_byte && subtype != b"Type3").then(|| simple_table(doc, font));
    Font {
        encoding,
        simple,
        predefined,
        two_byte,
        widths,
        scale,
    }
}

#[derive(Clone)]
struct GraphicsState<'a> {
    ctm: Matrix,
    font: Option<Rc<Font<'a>>>,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    h_scale: f32,
    leading: f32,
    rise: f32,
}

/// Where the previous glyph ended (device space), and its baseline direction.
#[derive(Clone, Copy)]
struct Pen {
    x: f32,
    y: f32,
    size: f32,
    /// Unit vector along the baseline.
    ux: f32,
    uy: f32,
}

/// Why extraction produced what it did.
#[derive(Debug, Default)]
pub struct PageTexts {
    /// The text, pages separated by blank lines.
    pub text: String,
    /// Pages in the document.
    pub pages: u32,
    /// Pages read before the budget was full.
    pub pages_read: u32,
    /// First content error met (a page that could not be read).
    pub first_error: Option<String>,
    /// Glyphs that no font could decode.
    pub undecodable: usize,
}

struct Interpreter<'a> {
    doc: &'a Document,
    fonts: HashMap<usize, Rc<Font<'a>>>,
    out: String,
    line_start: usize,
    pen: Option<Pen>,
    nonspace: usize,
    budget: usize,
    undecodable: usize,
    forms: HashSet<ObjectId>,
}

impl<'a> Interpreter<'a> {
    fn full(&self) -> bool {
        self.budget > 0 && self.nonspace >= self.budget
    }

    fn font(&mut self, resources: Option<&'a Dictionary>, name: &[u8]) -> Option<Rc<Font<'a>>> {
        let fonts = resources?
            .get(b"Font")
            .ok()
            .and_then(|o| dict(self.doc, o))?;
        let font = fonts.get(name).ok().and_then(|o| dict(self.doc, o))?;
        let key = font as *const Dictionary as usize;
        Some(
            self.fonts
                .entry(key)
                .or_insert_with(|| Rc::new(load_font(self.doc, font)))
                .clone(),
        )
    }

    fn newline(&mut self) {
        self.finish_line();
        self.out.push('\n');
        self.line_start = self.out.len();
    }

    /// Puts a right-to-left line into logical order.
    fn finish_line(&mut self) {
        let line = &self.out[self.line_start..];
        let rtl = line.chars().filter(|c| is_rtl(*c)).count();
        let ltr = line
            .chars()
            .filter(|c| c.is_alphabetic() && !is_rtl(*c))
            .count();
        if rtl > 0 && rtl >= ltr {
            let logical = visual_to_logical(line);
            self.out.truncate(self.line_start);
            self.out.push_str(&logical);
        }
    }

    fn show(&mut self, gs: &GraphicsState<'a>, tm: &mut Matrix, bytes: &[u8]) {
        let Some(font) = gs.font.clone() else { return };
        let step = if font.two_byte { 2 } else { 1 };
        let codes: Vec<&[u8]> = match &font.predefined {
            Some(p) => p.split(bytes),
            None => bytes.chunks(step).collect(),
        };
        for code_bytes in codes {
            let code = code_bytes
                .iter()
                .fold(0u32, |c, b| (c << 8) | u32::from(*b));
            let trm = mul(
                &[gs.size * gs.h_scale, 0.0, 0.0, gs.size, 0.0, gs.rise],
                &mul(tm, &gs.ctm),
            );
            let (x, y) = (trm[4], trm[5]);
            let size = (trm[2] * trm[2] + trm[3] * trm[3]).sqrt().max(0.1);
            let mut glyph = String::new();
            font.decode(code_bytes, &mut glyph);
            let glyph: String = glyph
                .chars()
                .filter(|c| !c.is_control() || *c == ' ')
                .collect();
            let is_space = code_bytes == [32] || glyph == " ";
            if glyph.is_empty() || glyph.contains('\u{fffd}') {
                self.undecodable += 1;
            } else {
                self.place(x, y, size, &glyph);
            }
            let len = (trm[0] * trm[0] + trm[1] * trm[1]).sqrt().max(1e-6);
            let (ux, uy) = (trm[0] / len, trm[1] / len);
            // Predefined CMaps map codes to CIDs we do not know: use the default width.
            let w0 = match (&font.predefined, code_bytes.len()) {
                (Some(_), 1) => 500.0,
                (Some(_), _) => font.widths.get(u32::MAX),
                (None, _) => font.widths.get(code),
            } * font.scale;
            let tx = (w0 * gs.size
                + gs.char_spacing
                + if is_space && step == 1 {
                    gs.word_spacing
                } else {
                    0.0
                })
                * gs.h_scale;
            *tm = mul(&[1.0, 0.0, 0.0, 1.0, tx, 0.0], tm);
            let end = mul(
                &[gs.size * gs.h_scale, 0.0, 0.0, gs.size, 0.0, gs.rise],
                &mul(tm, &gs.ctm),
            );
            if !glyph.is_empty() {
                self.pen = Some(Pen {
                    x: end[4],
                    y: end[5],
                    size,
                    ux,
                    uy,
                });
            }
        }
    }

    fn place(&mut self, x: f32, y: f32, size: f32, glyph: &str) {
        if let Some(pen) = self.pen {
            let height = pen.size.max(size);
            // Distances along and across the baseline, so rotated text spaces too.
            let (ex, ey) = (x - pen.x, y - pen.y);
            let dx = ex * pen.ux + ey * pen.uy;
            let dy = (ey * pen.ux - ex * pen.uy).abs();
            let ends_blank = self.out.ends_with([' ', '\n']) || self.out.is_empty();
            if dy > 0.5 * height {
                if !self.out.ends_with('\n') {
                    self.newline();
                }
            } else if (dx > 0.1 * height || dx < -1.5 * height)
                && !ends_blank
                && !glyph.starts_with(' ')
            {
                self.out.push(' ');
            }
        }
        if glyph == " " && self.out.ends_with([' ', '\n']) {
            return;
        }
        self.nonspace += glyph.chars().filter(|c| !c.is_whitespace()).count();
        self.out.push_str(glyph);
    }

    fn run(
        &mut self,
        content: &[u8],
        resources: Option<&'a Dictionary>,
        gs: &mut GraphicsState<'a>,
        depth: usize,
    ) -> Result<(), String> {
        let ops = Content::decode(content)
            .map_err(|e| e.to_string())?
            .operations;
        let mut stack: Vec<GraphicsState<'a>> = Vec::new();
        let mut tm = IDENTITY;
        let mut tlm = IDENTITY;
        for op in &ops {
            if self.full() {
                return Ok(());
            }
            let a = &op.operands;
            match op.operator.as_str() {
                "q" => stack.push(gs.clone()),
                "Q" => {
                    if let Some(saved) = stack.pop() {
                        *gs = saved;
                    }
                }
                "cm" => {
                    if let Some(m) = nums::<6>(a) {
                        gs.ctm = mul(&m, &gs.ctm);
                    }
                }
                "BT" => {
                    tm = IDENTITY;
                    tlm = IDENTITY;
                }
                "Tf" => {
                    if let (Some(name), Some(size)) = (
                        a.first().and_then(|o| o.as_name().ok()),
                        a.get(1).and_then(num),
                    ) {
                        gs.font = self.font(resources, name);
                        gs.size = size;
                    }
                }
                "Tc" => gs.char_spacing = a.first().and_then(num).unwrap_or(0.0),
                "Tw" => gs.word_spacing = a.first().and_then(num).unwrap_or(0.0),
                "Tz" => gs.h_scale = a.first().and_then(num).unwrap_or(100.0) / 100.0,
                "TL" => gs.leading = a.first().and_then(num).unwrap_or(0.0),
                "Ts" => gs.rise = a.first().and_then(num).unwrap_or(0.0),
                "Td" | "TD" => {
                    if let Some([tx, ty]) = nums::<2>(a) {
                        if op.operator == "TD" {
                            gs.leading = -ty;
                        }
                        tlm = mul(&[1.0, 0.0, 0.0, 1.0, tx, ty], &tlm);
                        tm = tlm;
                    }
                }
                "Tm" => {
                    if let Some(m) = nums::<6>(a) {
                        tlm = m;
                        tm = m;
                    }
                }
                "T*" => {
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.leading], &tlm);
                    tm = tlm;
                }
                "Tj" | "'" | "\"" => {
                    if op.operator != "Tj" {
                        if op.operator == "\"" {
                            if let Some([aw, ac]) = a.get(..2).and_then(nums::<2>) {
                                gs.word_spacing = aw;
                                gs.char_spacing = ac;
                            }
                        }
                        tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.leading], &tlm);
                        tm = tlm;
                    }
                    if let Some(Object::String(bytes, _)) = a.last() {
                        self.show(gs, &mut tm, bytes);
                    }
                }
                "TJ" => {
                    if let Some(Object::Array(items)) = a.first() {
                        for item in items {
                            match item {
                                Object::String(bytes, _) => self.show(gs, &mut tm, bytes),
                                other => {
                                    if let Some(n) = num(other) {
                                        let tx = -n / 1000.0 * gs.size * gs.h_scale;
                                        tm = mul(&[1.0, 0.0, 0.0, 1.0, tx, 0.0], &tm);
                                    }
                                }
                            }
                        }
                    }
                }
                "Do" => {
                    if depth < MAX_FORM_DEPTH {
                        if let Some(name) = a.first().and_then(|o| o.as_name().ok()) {
                            self.form(resources, name, gs, depth);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn form(
        &mut self,
        resources: Option<&'a Dictionary>,
        name: &[u8],
        gs: &GraphicsState<'a>,
        depth: usize,
    ) {
        let Some(xobjects) = resources
            .and_then(|r| r.get(b"XObject").ok())
            .and_then(|o| dict(self.doc, o))
        else {
            return;
        };
        let Ok(Object::Reference(id)) = xobjects.get(name) else {
            return;
        };
        let Ok(Object::Stream(stream)) = self.doc.get_object(*id) else {
            return;
        };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice())
            || !self.forms.insert(*id)
        {
            return;
        }
        let content = match stream.decompressed_content_with_limit(MAX_STREAM_BYTES) {
            Ok(c) => c,
            Err(_) if stream.dict.get(b"Filter").is_err() => stream.content.clone(),
            Err(_) => {
                self.forms.remove(id);
                return;
            }
        };
        let mut inner = gs.clone();
        if let Some(m) = stream
            .dict
            .get(b"Matrix")
            .ok()
            .and_then(|o| array(self.doc, o))
            .and_then(|a| nums::<6>(a))
        {
            inner.ctm = mul(&m, &gs.ctm);
        }
        let form_resources = stream
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|o| dict(self.doc, o))
            .or(resources);
        let _ = self.run(&content, form_resources, &mut inner, depth + 1);
        self.forms.remove(id);
    }
}

fn is_rtl(c: char) -> bool {
    matches!(u32::from(c), 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF)
}

/// Reverses a visually ordered right-to-left line, keeping runs of
/// left-to-right letters and digits in their own order.
fn visual_to_logical(line: &str) -> String {
    let reversed: Vec<char> = line.chars().rev().collect();
    let mut out = String::with_capacity(line.len());
    let mut run: Vec<char> = Vec::new();
    for c in reversed {
        if !is_rtl(c) && !c.is_whitespace() {
            run.push(c);
        } else {
            out.extend(run.drain(..).rev());
            out.push(c);
        }
    }
    out.extend(run.drain(..).rev());
    out
}

fn page_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let (inline, ids) = doc.get_page_resources(page).ok()?;
    inline.or_else(|| ids.first().and_then(|id| doc.get_dictionary(*id).ok()))
}

/// Extracts text from `doc` page by page until `budget` non-whitespace
/// characters are collected (0 = everything).
pub fn extract_pages(doc: &Document, budget: usize) -> PageTexts {
    let pages = doc.get_pages();
    let mut result = PageTexts {
        pages: u32::try_from(pages.len()).unwrap_or(u32::MAX),
        ..PageTexts::default()
    };
    let mut it = Interpreter {
        doc,
        fonts: HashMap::new(),
        out: String::new(),
        line_start: 0,
        pen: None,
        nonspace: 0,
        budget,
        undecodable: 0,
        forms: HashSet::new(),
    };
    for (_, &page) in pages.iter() {
        if it.full() {
            break;
        }
        result.pages_read += 1;
        let content = match doc.get_page_content_with_limit(page, MAX_STREAM_BYTES) {
            Ok(c) => c,
            Err(e) => {
                result.first_error.get_or_insert_with(|| e.to_string());
                continue;
            }
        };
        let mut gs = GraphicsState {
            ctm: IDENTITY,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            h_scale: 1.0,
            leading: 0.0,
            rise: 0.0,
        };
        if let Err(e) = it.run(&content, page_resources(doc, page), &mut gs, 0) {
            result.first_error.get_or_insert(e);
        }
        if !it.out.ends_with('\n') && !it.out.is_empty() {
            it.newline();
        }
        it.finish_line();
        it.out.push('\n');
        it.line_start = it.out.len();
        it.pen = None;
    }
    result.undecodable = it.undecodable;
    result.text = it.out;
    result
}

#[cfg(test)]
mod tests {
    use lopdf::{dictionary, Stream};

    use super::*;

    /// A one-page PDF whose page content is `content`, with Helvetica as /F1 and
    /// the given Form XObjects (name, content; each may draw /F1 and the others).
    fn pdf(content: &str, forms: &[(&str, &str)]) -> Document {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
        });
        let form_ids: Vec<(String, ObjectId)> = forms
            .iter()
            .map(|(name, _)| ((*name).to_owned(), doc.new_object_id()))
            .collect();
        let mut xobjects = Dictionary::new();
        for (name, id) in &form_ids {
            xobjects.set(name.as_bytes().to_vec(), Object::Reference(*id));
        }
        let resources = doc.add_object(
            dictionary! { "Font" => dictionary! { "F1" => font }, "XObject" => xobjects },
        );
        for ((_, body), (_, id)) in forms.iter().zip(&form_ids) {
            let dict = dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 600.into(), 800.into()], "Resources" => resources };
            doc.objects.insert(
                *id,
                Object::Stream(Stream::new(dict, body.as_bytes().to_vec())),
            );
        }
        let contents = doc.add_object(Stream::new(dictionary! {}, content.as_bytes().to_vec()));
        let page = doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => contents, "Resources" => resources });
        doc.objects.insert(pages_id, Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1, "MediaBox" => vec![0.into(), 0.into(), 600.into(), 800.into()],
        }));
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        doc
    }

    fn text(content: &str, forms: &[(&str, &str)]) -> String {
        extract_pages(&pdf(content, forms), 0)
            .text
            .trim()
            .to_owned()
    }

    #[test]
    fn word_gaps_come_from_positions_not_strings() {
        assert_eq!(
            text("BT /F1 12 Tf 72 700 Td [(Hello) -400 (World)] TJ ET", &[]),
            "Hello World"
        );
        assert_eq!(
            text("BT /F1 12 Tf 72 700 Td [(Hel) -15 (lo)] TJ ET", &[]),
            "Hello"
        );
        assert_eq!(
            text("BT /F1 12 Tf 72 700 Td (Total) Tj 100 0 Td (42) Tj ET", &[]),
            "Total 42"
        );
        assert_eq!(
            text(
                "BT /F1 12 Tf 72 700 Td (first) Tj 0 -20 Td (second) Tj ET",
                &[]
            ),
            "first\nsecond"
        );
    }

    #[test]
    fn rotated_text_keeps_its_spaces_and_lines() {
        let rotated = "q 0 1 -1 0 500 100 cm BT /F1 12 Tf 0 0 Td (DOCUMENT) Tj 70 0 Td (NO.) Tj 0 -20 Td (DATE) Tj ET Q";
        assert_eq!(text(rotated, &[]), "DOCUMENT NO.\nDATE");
    }

    #[test]
    fn form_xobjects_are_read_and_cycles_stop() {
        let page = "q 1 0 0 1 0 0 cm /Fm1 Do Q";
        let forms = [
            (
                "Fm1",
                "BT /F1 12 Tf 72 700 Td (inside the form) Tj ET /Fm2 Do",
            ),
            ("Fm2", "/Fm1 Do BT /F1 12 Tf 72 600 Td (nested) Tj ET"),
        ];
        let got = text(page, &forms);
        assert_eq!(got.matches("inside the form").count(), 1, "{got}");
        assert!(got.contains("nested"), "{got}");
    }

    #[test]
    fn extraction_stops_at_the_budget() {
        let lines: String = (0..50)
            .map(|i| format!("(line{i:02} aaaaaaaaaa) Tj 0 -14 Td "))
            .collect();
        let result = extract_pages(&pdf(&format!("BT /F1 12 Tf 72 780 Td {lines} ET"), &[]), 40);
        assert!(
            result.text.contains("line00") && !result.text.contains("line10"),
            "{}",
            result.text
        );
    }

    #[test]
    fn right_to_left_lines_come_out_in_logical_order() {
        assert_eq!(visual_to_logical("םולש 2026 abc"), "abc 2026 שלום");
    }
}
