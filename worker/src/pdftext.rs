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

use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};

use crate::pdflex::Ops;
use crate::tounicode::ToUnicode;

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
    // At a code the base encoding leaves empty, so a name lopdf does not know
    // yields nothing rather than the base encoding's character.
    let mut diff = Dictionary::new();
    diff.set(
        "Differences",
        Object::Array(vec![Object::Integer(1), Object::Name(name.to_vec())]),
    );
    decode_with(doc, Object::Dictionary(diff), 1)
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
    // Whether the PDF names the base encoding; if not, an embedded font's own
    // encoding is the base (ISO 32000 9.6.6.1).
    let mut named_base = false;
    match encoding {
        Some(Object::Name(name)) if known(name) => {
            base = name.clone();
            named_base = true;
        }
        Some(Object::Dictionary(d)) => {
            if let Ok(name) = d.get(b"BaseEncoding").and_then(Object::as_name) {
                if known(name) {
                    base = name.to_vec();
                    named_base = true;
                }
            }
            differences = d.get(b"Differences").ok().and_then(|o| array(doc, o));
        }
        _ => {}
    }
    let mut table: SimpleTable = Box::new([None; 256]);
    let builtin = if named_base {
        None
    } else {
        type1_builtin_encoding(doc, font).or_else(|| cff_builtin_encoding(doc, font))
    };
    if let Some(names) = builtin {
        for (code, name) in names {
            table[usize::from(code)] = glyph_char(doc, &name);
        }
    } else if base != b"SymbolEncoding" {
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

/// A stream's decoded content within the size cap, or its bytes as they are
/// when it has no filter (lopdf reports those as undecodable).
fn stream_bytes(stream: &lopdf::Stream) -> Option<Vec<u8>> {
    stream
        .decompressed_content_with_limit(MAX_STREAM_BYTES)
        .ok()
        .or_else(|| {
            stream
                .dict
                .get(b"Filter")
                .is_err()
                .then(|| stream.content.clone())
        })
}

/// The embedded font program under `key` (`FontFile`, `FontFile2`, `FontFile3`)
/// of a font's descriptor.
fn font_program<'a>(doc: &'a Document, font: &Dictionary, key: &[u8]) -> Option<&'a lopdf::Stream> {
    let descriptor = font
        .get(b"FontDescriptor")
        .ok()
        .and_then(|o| dict(doc, o))?;
    let Ok(Object::Reference(id)) = descriptor.get(key) else {
        return None;
    };
    doc.get_object(*id).ok()?.as_stream().ok()
}

/// The built-in encoding of an embedded Type 1 font program: the
/// `dup <code> /<glyph> put` entries of the `/Encoding` array in its clear-text
/// part. `None` for other fonts, and for programs that use StandardEncoding.
fn type1_builtin_encoding(doc: &Document, font: &Dictionary) -> Option<Vec<(u8, Vec<u8>)>> {
    let data = stream_bytes(font_program(doc, font, b"FontFile")?)?;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let clear = &data[..find(&data, b"eexec").unwrap_or(data.len())];
    let mut ops = Ops::new(&clear[find(clear, b"/Encoding")?..]);
    let mut names = Vec::new();
    while let Some((op, args)) = ops.next_op() {
        match (op, args) {
            ("StandardEncoding", _) if names.is_empty() => return None,
            ("put", [.., Object::Integer(code), Object::Name(name)]) => {
                if let Ok(code) = u8::try_from(*code) {
                    names.push((code, name.clone()));
                }
            }
            ("def", _) => break,
            _ => {}
        }
    }
    (!names.is_empty()).then_some(names)
}

/// The built-in encoding of an embedded CFF (Type 1C) font program: each
/// code's glyph name through the font's encoding and charset.
fn cff_builtin_encoding(doc: &Document, font: &Dictionary) -> Option<Vec<(u8, Vec<u8>)>> {
    let stream = font_program(doc, font, b"FontFile3")?;
    if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Type1C".as_slice()) {
        return None;
    }
    let data = stream_bytes(stream)?;
    let cff = ttf_parser::cff::Table::parse(&data)?;
    let names: Vec<(u8, Vec<u8>)> = (0..=255u8)
        .filter_map(|code| {
            let name = cff
                .glyph_index(code)
                .filter(|g| g.0 != 0)
                .and_then(|g| cff.glyph_name(g))?;
            Some((code, name.as_bytes().to_vec()))
        })
        .collect();
    (!names.is_empty()).then_some(names)
}

/// What the extractor needs of a font.
struct Font<'a> {
    /// The font's ToUnicode map, read by docsort (first choice).
    to_unicode: Option<ToUnicode>,
    encoding: Option<Encoding<'a>>,
    /// Simple fonts: the code table (used when there is no ToUnicode, or it lacks a code).
    simple: Option<SimpleTable>,
    /// Codes of a predefined CJK CMap (no ToUnicode).
    predefined: Option<Predefined>,
    /// Codes are two bytes (Type0 / CID fonts).
    two_byte: bool,
    /// Identity-encoded CID font of an Adobe collection without ToUnicode:
    /// codes are CIDs, mapped through the collection's table.
    cid_table: Option<&'static [char]>,
    /// Vertical writing mode (a `-V` CMap): glyphs advance downwards.
    vertical: bool,
    widths: Widths,
    /// Glyph space to text space (1/1000 except Type3).
    scale: f32,
}

impl Font<'_> {
    fn decode(&self, code: &[u8], out: &mut String) {
        let value = code.iter().fold(0u32, |c, b| (c << 8) | u32::from(*b));
        if let Some(text) = self
            .to_unicode
            .as_ref()
            .and_then(|t| t.get(value))
            .filter(|t| !t.is_empty() && !t.contains('\u{fffd}'))
        {
            out.push_str(text);
            return;
        }
        if let Some(p) = &self.predefined {
            p.decode(code, out);
            return;
        }
        if let (Some(table), [high, low]) = (self.cid_table, code) {
            if let Some(&c) = table
                .get(usize::from(u16::from_be_bytes([*high, *low])))
                .filter(|c| **c != '\0')
            {
                out.push(c);
            }
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
    let to_unicode = font
        .get(b"ToUnicode")
        .ok()
        .and_then(|o| match o {
            Object::Reference(id) => doc.get_object(*id).ok(),
            other => Some(other),
        })
        .and_then(|o| o.as_stream().ok())
        .and_then(stream_bytes)
        .and_then(|data| ToUnicode::parse(&data));
    let has_to_unicode = to_unicode.is_some();
    // lopdf's own reading of the map is kept only where docsort's failed.
    let encoding = if font.get(b"ToUnicode").is_ok() && !has_to_unicode {
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
        (Some(Encoding::SimpleEncoding(name)), false) if two_byte => Predefined::from_name(name),
        (_, false) if !two_byte => legacy_cjk_font(doc, font).map(Predefined::Legacy),
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
    // Type0 fonts: the CID font and the CMap's name.
    let descendant = font
        .get(b"DescendantFonts")
        .ok()
        .filter(|_| two_byte)
        .and_then(|o| array(doc, o))
        .and_then(|a| a.first())
        .and_then(|o| dict(doc, o));
    let cmap = font
        .get(b"Encoding")
        .and_then(Object::as_name)
        .ok()
        .filter(|_| two_byte);
    let mut scale = 0.001;
    let widths = if two_byte {
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
    let identity = matches!(cmap, Some(b"Identity-H" | b"Identity-V"));
    let cid_table = if identity && !has_to_unicode {
        let info = descendant
            .and_then(|d| d.get(b"CIDSystemInfo").ok())
            .and_then(|o| dict(doc, o));
        let text = |key: &[u8]| {
            info.and_then(|i| i.get(key).ok())
                .and_then(|o| o.as_str().ok())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        match (text(b"Registry").as_deref(), text(b"Ordering")) {
            (Some("Adobe"), Some(ordering)) => cid_to_unicode(&ordering),
            _ => None,
        }
    } else {
        None
    };
    let vertical = cmap.is_some_and(|n| n.ends_with(b"-V"));
    Font {
        to_unicode,
        encoding,
        simple,
        predefined,
        two_byte,
        cid_table,
        vertical,
        widths,
        scale,
    }
}

/// A simple TrueType font that is not embedded and is named after a Chinese,
/// Japanese or Korean system font: old writers show such text as the legacy
/// multi-byte encoding's bytes through a one-byte font, leaving the decoding to
/// the viewer's installed font. The name says which encoding.
fn legacy_cjk_font(doc: &Document, font: &Dictionary) -> Option<&'static encoding_rs::Encoding> {
    if font.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"TrueType".as_slice()) {
        return None;
    }
    let descriptor = font.get(b"FontDescriptor").ok().and_then(|o| dict(doc, o));
    if descriptor.is_some_and(|d| {
        [b"FontFile".as_slice(), b"FontFile2", b"FontFile3"]
            .iter()
            .any(|k| d.has(k))
    }) {
        return None;
    }
    let name = font.get(b"BaseFont").and_then(Object::as_name).ok()?;
    // A subset tag ("ABCDEF+") says nothing about the font.
    let name = match name.iter().position(|&b| b == b'+') {
        Some(6) => &name[7..],
        _ => name,
    };
    if !name.is_ascii() {
        // The name itself in GBK ("宋体", "仿宋_GB2312"), else Shift-JIS ("ＭＳ 明朝").
        let (han, _, bad) = encoding_rs::GBK.decode(name);
        if !bad
            && han.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
            && han
                .chars()
                .all(|c| c.is_ascii() || ('\u{4e00}'..='\u{9fff}').contains(&c))
        {
            return Some(encoding_rs::GBK);
        }
        return (!encoding_rs::SHIFT_JIS.decode(name).2).then_some(encoding_rs::SHIFT_JIS);
    }
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let has = |parts: &[&str]| parts.iter().any(|p| name.contains(p));
    if has(&[
        "gb2312", "gbk", "simsun", "simhei", "kaiti", "fangsong", "stsong", "stkaiti", "stheiti",
    ]) {
        Some(encoding_rs::GBK)
    } else if has(&["mingliu", "dfkai", "big5"]) {
        Some(encoding_rs::BIG5)
    } else if has(&[
        "ms-mincho",
        "ms-gothic",
        "msmincho",
        "msgothic",
        "ms-pmincho",
        "ms-pgothic",
    ]) {
        Some(encoding_rs::SHIFT_JIS)
    } else if has(&["batang", "gulim", "dotum", "gungsuh"]) {
        Some(encoding_rs::EUC_KR)
    } else {
        None
    }
}

/// Where the Adobe collections' CID-to-Unicode tables are looked for: the
/// `DOCSORT_CID_TO_UNICODE` folder, then poppler-data's (Debian, Ubuntu,
/// Fedora, Alpine and Homebrew package `poppler-data`).
const CID_TABLE_DIRS: [&str; 2] = [
    "/usr/share/poppler/cidToUnicode",
    "/usr/local/share/poppler/cidToUnicode",
];

/// The CID -> Unicode table of an Adobe character collection (`Japan1`,
/// `GB1`, `CNS1`, `Korea1`), read once per process; `None` where the tables
/// are not installed.
fn cid_to_unicode(ordering: &str) -> Option<&'static [char]> {
    let i = CID_ORDERINGS.iter().position(|o| *o == ordering)?;
    CID_TABLES[i]
        .get_or_init(|| {
            let name = format!("Adobe-{ordering}");
            let dirs = std::env::var_os("DOCSORT_CID_TO_UNICODE").map(std::path::PathBuf::from).into_iter().chain(CID_TABLE_DIRS.iter().map(std::path::PathBuf::from));
            let text = dirs.into_iter().find_map(|d| std::fs::read_to_string(d.join(&name)).ok());
            if text.is_none() {
                tracing::warn!(collection = %name, "no CID-to-Unicode table (install poppler-data or set DOCSORT_CID_TO_UNICODE): text in this collection's fonts cannot be decoded");
            }
            text.map(|t| parse_cid_table(&t))
        })
        .as_deref()
}

const CID_ORDERINGS: [&str; 4] = ["Japan1", "GB1", "CNS1", "Korea1"];
static CID_TABLES: [std::sync::OnceLock<Option<Vec<char>>>; 4] =
    [const { std::sync::OnceLock::new() }; 4];

/// One hexadecimal code point per line, the line number being the CID; a
/// line that is not one code point maps to nothing.
fn parse_cid_table(text: &str) -> Vec<char> {
    text.lines()
        .map(|l| {
            u32::from_str_radix(l.trim(), 16)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\0')
        })
        .collect()
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
    /// Where the line before the current one starts.
    prev_line_start: usize,
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
        self.prev_line_start = self.line_start;
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
            let glyph = plain_letters(&glyph);
            let is_space = code_bytes == [32] || glyph == " ";
            // The direction glyphs advance in: along the text's x axis, or down
            // its y axis for vertical writing.
            let (ax, ay) = if font.vertical {
                (-trm[2], -trm[3])
            } else {
                (trm[0], trm[1])
            };
            let len = (ax * ax + ay * ay).sqrt().max(1e-6);
            let (ux, uy) = (ax / len, ay / len);
            // Predefined CMaps map codes to CIDs we do not know: use the default width.
            let w0 = match (&font.predefined, font.two_byte, code_bytes.len()) {
                // A legacy encoding through a one-byte font: each byte has its width.
                (Some(_), false, _) => code_bytes
                    .iter()
                    .map(|b| font.widths.get(u32::from(*b)))
                    .sum(),
                (Some(_), true, 1) => 500.0,
                (Some(_), true, _) => font.widths.get(u32::MAX),
                (None, _, _) => font.widths.get(code),
            } * font.scale;
            let tx = (w0 * gs.size
                + gs.char_spacing
                + if is_space && step == 1 {
                    gs.word_spacing
                } else {
                    0.0
                })
                * gs.h_scale;
            if glyph.is_empty() || glyph.contains('\u{fffd}') {
                self.undecodable += 1;
            } else {
                self.place(x, y, size, &glyph);
            }
            // The pen ends where the glyph itself ends: character and word
            // spacing are room after it (a wide Tc can separate table cells
            // drawn by one string), so they count as a gap, as in poppler.
            let (ink, advance) = if font.vertical {
                // Vertical fonts advance by their W2 heights; the default is one em down.
                let spacing = gs.char_spacing + if is_space { gs.word_spacing } else { 0.0 };
                ((0.0, -gs.size), (0.0, -gs.size + spacing))
            } else {
                ((w0 * gs.size * gs.h_scale, 0.0), (tx, 0.0))
            };
            let end = mul(
                &[gs.size * gs.h_scale, 0.0, 0.0, gs.size, 0.0, gs.rise],
                &mul(&mul(&[1.0, 0.0, 0.0, 1.0, ink.0, ink.1], tm), &gs.ctm),
            );
            *tm = mul(&[1.0, 0.0, 0.0, 1.0, advance.0, advance.1], tm);
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
            } else if dx < -0.1 * height && glyph.starts_with(is_cjk) && self.out.ends_with(' ') {
                // A space drawn after a CJK character and overlapped by the
                // next one is no word break (CJK text has none): writers
                // append one to every character.
                let before = self.out[..self.out.len() - 1].chars().next_back();
                if before.is_some_and(is_cjk) {
                    self.out.pop();
                }
            }
        }
        if glyph == " " && self.out.ends_with([' ', '\n']) {
            return;
        }
        self.join_hyphenated(glyph);
        self.nonspace += glyph.chars().filter(|c| !c.is_whitespace()).count();
        self.out.push_str(glyph);
    }

    /// Writes `text` as it is, line by line (text that no content stream draws).
    fn write_lines(&mut self, text: &str) {
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                self.newline();
            }
            let line = line.trim();
            self.nonspace += line.chars().filter(|c| !c.is_whitespace()).count();
            self.out.push_str(line);
        }
        self.pen = None;
    }

    /// A word hyphenated at the end of a line ("ef-" then "ficient") is
    /// rejoined when the next line goes on with a lower-case letter.
    fn join_hyphenated(&mut self, glyph: &str) {
        if !self.out.ends_with("-\n")
            || self.line_start != self.out.len()
            || !glyph.starts_with(|c: char| c.is_lowercase())
        {
            return;
        }
        let before = self.out[..self.out.len() - 2].chars().next_back();
        if before.is_some_and(|c| c.is_alphabetic() && !is_rtl(c)) {
            self.out.truncate(self.out.len() - 2);
            self.line_start = self.prev_line_start;
        }
    }

    fn run(
        &mut self,
        content: &[u8],
        resources: Option<&'a Dictionary>,
        gs: &mut GraphicsState<'a>,
        depth: usize,
    ) -> Result<(), String> {
        let mut ops = Ops::new(content);
        let mut stack: Vec<GraphicsState<'a>> = Vec::new();
        let mut tm = IDENTITY;
        let mut tlm = IDENTITY;
        while let Some((op, a)) = ops.next_op() {
            if self.full() {
                return Ok(());
            }
            match op {
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
                        if op == "TD" {
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
                    if op != "Tj" {
                        if op == "\"" {
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
        ops.first_error().map_or(Ok(()), |e| Err(e.to_owned()))
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
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice()) {
            return;
        }
        self.draw_form(*id, resources, gs, depth);
    }

    /// Runs a form's content (an XObject or an annotation's appearance) with
    /// its own matrix and resources; a form already being drawn is skipped.
    fn draw_form(
        &mut self,
        id: ObjectId,
        resources: Option<&'a Dictionary>,
        gs: &GraphicsState<'a>,
        depth: usize,
    ) {
        let Ok(Object::Stream(stream)) = self.doc.get_object(id) else {
            return;
        };
        if !self.forms.insert(id) {
            return;
        }
        let Some(content) = stream_bytes(stream) else {
            self.forms.remove(&id);
            return;
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
        self.forms.remove(&id);
    }
}

/// A page's visible annotation, as a viewer draws it.
struct Annotation {
    /// The normal appearance and the matrix that places it on the page.
    appearance: Option<(ObjectId, Matrix)>,
    /// A text or choice field's value, for when the appearance shows no text:
    /// form fillers often set the value and leave the appearance for the
    /// viewer to regenerate (`NeedAppearances`).
    value: Option<String>,
}

/// The value of the form field behind a widget annotation, when it is a text
/// or choice field (inherited attributes read up the `Parent` chain).
fn field_value(doc: &Document, widget: &Dictionary) -> Option<String> {
    let (mut kind, mut value) = (None, None);
    let mut node = Some(widget);
    for _ in 0..MAX_FORM_DEPTH {
        let Some(field) = node else { break };
        kind = kind.or_else(|| field.get(b"FT").and_then(Object::as_name).ok());
        value = value.or_else(|| field.get(b"V").ok());
        node = field.get(b"Parent").ok().and_then(|o| dict(doc, o));
    }
    if !matches!(kind, Some(b"Tx" | b"Ch")) {
        return None;
    }
    let text = match doc.dereference(value?).ok()?.1 {
        Object::Array(items) => items
            .iter()
            .filter_map(|o| lopdf::decode_text_string(o).ok())
            .collect::<Vec<_>>()
            .join("\n"),
        other => lopdf::decode_text_string(other).ok()?,
    };
    text.chars().any(|c| !c.is_whitespace()).then_some(text)
}

/// A page's visible annotations (form fields, free text, stamps) with their
/// normal appearances, each with the matrix that places it on the page
/// (ISO 32000 12.5.5), as a viewer draws them.
fn annotations(doc: &Document, page: ObjectId) -> Vec<Annotation> {
    const HIDDEN: i64 = 1 << 1;
    const NO_VIEW: i64 = 1 << 5;
    let Some(annots) = doc
        .get_dictionary(page)
        .ok()
        .and_then(|p| p.get(b"Annots").ok())
        .and_then(|o| array(doc, o))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for annot in annots.iter().filter_map(|o| dict(doc, o)) {
        let flags = annot
            .get(b"F")
            .ok()
            .and_then(|o| o.as_i64().ok())
            .unwrap_or(0);
        let subtype = annot.get(b"Subtype").and_then(Object::as_name).ok();
        if flags & (HIDDEN | NO_VIEW) != 0 || subtype == Some(b"Popup".as_slice()) {
            continue;
        }
        let value = match subtype {
            Some(b"Widget") => field_value(doc, annot),
            _ => None,
        };
        let appearance = appearance_placement(doc, annot);
        if appearance.is_some() || value.is_some() {
            out.push(Annotation { appearance, value });
        }
    }
    out
}

/// An annotation's normal appearance and the matrix that maps its bounding
/// box onto the annotation's rectangle.
fn appearance_placement(doc: &Document, annot: &Dictionary) -> Option<(ObjectId, Matrix)> {
    let normal = annot
        .get(b"AP")
        .ok()
        .and_then(|o| dict(doc, o))
        .and_then(|ap| ap.get(b"N").ok())?;
    // One appearance, or one per state (check boxes, radio buttons) chosen by /AS.
    let id = match normal {
        Object::Reference(id) if matches!(doc.get_object(*id), Ok(Object::Stream(_))) => *id,
        other => {
            let state = annot.get(b"AS").and_then(Object::as_name).ok()?;
            match dict(doc, other)?.get(state) {
                Ok(Object::Reference(id)) => *id,
                _ => return None,
            }
        }
    };
    let Ok(Object::Stream(form)) = doc.get_object(id) else {
        return None;
    };
    let (Some(rect), Some(bbox)) = (
        annot
            .get(b"Rect")
            .ok()
            .and_then(|o| array(doc, o))
            .and_then(|a| nums::<4>(a)),
        form.dict
            .get(b"BBox")
            .ok()
            .and_then(|o| array(doc, o))
            .and_then(|a| nums::<4>(a)),
    ) else {
        return None;
    };
    let matrix = form
        .dict
        .get(b"Matrix")
        .ok()
        .and_then(|o| array(doc, o))
        .and_then(|a| nums::<6>(a))
        .unwrap_or(IDENTITY);
    // The matrix maps the bounding box somewhere; scale and move that box onto Rect.
    let corners = [
        (bbox[0], bbox[1]),
        (bbox[2], bbox[1]),
        (bbox[0], bbox[3]),
        (bbox[2], bbox[3]),
    ]
    .map(|(x, y)| {
        (
            matrix[0] * x + matrix[2] * y + matrix[4],
            matrix[1] * x + matrix[3] * y + matrix[5],
        )
    });
    let (min_x, max_x) = corners.iter().fold((f32::MAX, f32::MIN), |(lo, hi), c| {
        (lo.min(c.0), hi.max(c.0))
    });
    let (min_y, max_y) = corners.iter().fold((f32::MAX, f32::MIN), |(lo, hi), c| {
        (lo.min(c.1), hi.max(c.1))
    });
    let (rx0, ry0, rx1, ry1) = (
        rect[0].min(rect[2]),
        rect[1].min(rect[3]),
        rect[0].max(rect[2]),
        rect[1].max(rect[3]),
    );
    let sx = if max_x > min_x {
        (rx1 - rx0) / (max_x - min_x)
    } else {
        1.0
    };
    let sy = if max_y > min_y {
        (ry1 - ry0) / (max_y - min_y)
    } else {
        1.0
    };
    Some((id, [sx, 0.0, 0.0, sy, rx0 - min_x * sx, ry0 - min_y * sy]))
}

/// A glyph's text without control characters, with Latin ligatures (ﬁ, ﬀ,
/// ...) spelled out: words must read the same however they were typeset.
fn plain_letters(glyph: &str) -> String {
    let mut out = String::with_capacity(glyph.len());
    for c in glyph.chars() {
        match c {
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => out.push_str("st"),
            c if c.is_control() && c != ' ' => {}
            c => out.push(c),
        }
    }
    out
}

/// Han, kana, Hangul and full-width forms: scripts written without spaces.
fn is_cjk(c: char) -> bool {
    matches!(u32::from(c), 0x3000..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF)
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
    let pages: Vec<ObjectId> = doc.get_pages().into_values().collect();
    let mut result = PageTexts {
        pages: u32::try_from(pages.len()).unwrap_or(u32::MAX),
        ..PageTexts::default()
    };
    let mut it = Interpreter {
        doc,
        fonts: HashMap::new(),
        out: String::new(),
        line_start: 0,
        prev_line_start: 0,
        pen: None,
        nonspace: 0,
        budget,
        undecodable: 0,
        forms: HashSet::new(),
    };
    for &page in &pages {
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
        let gs = GraphicsState {
            ctm: IDENTITY,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            h_scale: 1.0,
            leading: 0.0,
            rise: 0.0,
        };
        let resources = page_resources(doc, page);
        if let Err(e) = it.run(&content, resources, &mut gs.clone(), 0) {
            result.first_error.get_or_insert(e);
        }
        for annotation in annotations(doc, page) {
            if it.full() {
                break;
            }
            if !it.out.ends_with('\n') && !it.out.is_empty() {
                it.newline();
            }
            it.pen = None;
            let drawn = it.nonspace;
            if let Some((appearance, placement)) = annotation.appearance {
                it.draw_form(
                    appearance,
                    resources,
                    &GraphicsState {
                        ctm: placement,
                        ..gs.clone()
                    },
                    0,
                );
            }
            if let Some(value) = annotation.value.filter(|_| it.nonspace == drawn) {
                it.write_lines(&value);
            }
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
        let helvetica = dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding" };
        pdf_with(content, forms, |_| helvetica, |_, _| Dictionary::new())
    }

    /// Like [`pdf`] with `font`'s result as /F1 and page entries from `page_extra`,
    /// which gets the document and the resources' id.
    fn pdf_with(
        content: &str,
        forms: &[(&str, &str)],
        font: impl FnOnce(&mut Document) -> Dictionary,
        page_extra: impl FnOnce(&mut Document, ObjectId) -> Dictionary,
    ) -> Document {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = font(&mut doc);
        let font = doc.add_object(font);
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
        let mut page = dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => contents, "Resources" => resources };
        for (k, v) in page_extra(&mut doc, resources) {
            page.set(k, v);
        }
        let page = doc.add_object(page);
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
        // A word hyphenated across lines is rejoined; a dash before a capital is kept.
        assert_eq!(
            text(
                "BT /F1 12 Tf 72 700 Td (an ef-) Tj 0 -14 Td (ficient way) Tj ET",
                &[]
            ),
            "an efficient way"
        );
        assert_eq!(
            text(
                "BT /F1 12 Tf 72 700 Td (Baden-) Tj 0 -14 Td (Baden) Tj ET",
                &[]
            ),
            "Baden-\nBaden"
        );
    }

    #[test]
    fn character_spacing_is_a_gap_after_the_glyph() {
        // A table row drawn by one string: a wide Tc moves each glyph a cell
        // further, and the TJ numbers pull the glyphs of one number back together.
        let row = "BT /F1 1 Tf 6 0 0 6 100 700 Tm 4 Tc \
                   [(02) 4000 (,) 4000 (2) 4000 (4) 4000 (81) 4000 (,) 4000 (1) 4000 (3) 4000 (5)] TJ ET";
        assert_eq!(text(row, &[]), "0 2,248 1,135");
        // Slightly tightened or loosened letters stay one word.
        assert_eq!(
            text("BT /F1 12 Tf 72 700 Td -0.2 Tc (Florida) Tj ET", &[]),
            "Florida"
        );
        assert_eq!(
            text("BT /F1 12 Tf 72 700 Td 0.5 Tc (Florida) Tj ET", &[]),
            "Florida"
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
    fn visible_annotation_appearances_are_read() {
        let doc = pdf_with(
            "BT /F1 12 Tf 72 700 Td (Name:) Tj ET",
            &[],
            |_| pdf_font(),
            |doc, resources| {
                let mut appearance = |text: &str| {
                    let body = format!("/Tx BMC BT /F1 10 Tf 2 3 Td ({text}) Tj ET EMC");
                    let bbox = vec![0.into(), 0.into(), 100.into(), 20.into()];
                    doc.add_object(Stream::new(dictionary! { "Subtype" => "Form", "BBox" => bbox, "Resources" => resources }, body.into_bytes()))
                };
                let (alice, secret, on, off) = (
                    appearance("Alice"),
                    appearance("secret"),
                    appearance("Checked"),
                    appearance("Unchecked"),
                );
                let rect = |y: i64| vec![150.into(), y.into(), 250.into(), (y + 20).into()];
                let annots = vec![
                    Object::Dictionary(
                        dictionary! { "Subtype" => "Widget", "Rect" => rect(695), "AP" => dictionary! { "N" => alice } },
                    ),
                    // Hidden (flag 2): a viewer does not draw it.
                    Object::Dictionary(
                        dictionary! { "Subtype" => "Widget", "F" => 2, "Rect" => rect(600), "AP" => dictionary! { "N" => secret } },
                    ),
                    // A check box: the appearance of its current state.
                    Object::Dictionary(dictionary! {
                        "Subtype" => "Widget", "Rect" => rect(500), "AS" => "On",
                        "AP" => dictionary! { "N" => dictionary! { "On" => on, "Off" => off } },
                    }),
                ];
                dictionary! { "Annots" => annots }
            },
        );
        let got = extract_pages(&doc, 0).text;
        assert!(
            got.contains("Name:\nAlice") && got.contains("Checked"),
            "{got}"
        );
        assert!(
            !got.contains("secret") && !got.contains("Unchecked"),
            "{got}"
        );
    }

    #[test]
    fn field_values_stand_in_for_appearances_without_text() {
        let doc = pdf_with(
            "BT /F1 12 Tf 72 700 Td (Name:) Tj ET",
            &[],
            |_| pdf_font(),
            |doc, resources| {
                // What form fillers leave: the value set, the appearance empty.
                let bbox = vec![0.into(), 0.into(), 100.into(), 20.into()];
                let empty = doc.add_object(Stream::new(
                    dictionary! { "Subtype" => "Form", "BBox" => bbox, "Resources" => resources },
                    b"/Tx BMC EMC".to_vec(),
                ));
                let utf16 = |s: &str| {
                    let mut bytes = vec![0xFE, 0xFF];
                    bytes.extend(s.encode_utf16().flat_map(u16::to_be_bytes));
                    Object::String(bytes, lopdf::StringFormat::Hexadecimal)
                };
                let rect = |y: i64| vec![150.into(), y.into(), 250.into(), (y + 20).into()];
                // A widget of a field (PDFDocEncoding value): it inherits FT and V.
                let field = doc.add_object(dictionary! { "FT" => "Ch", "T" => "City", "V" => Object::String(b"Z\xfcrich".to_vec(), lopdf::StringFormat::Literal) });
                let annots = vec![
                    Object::Dictionary(dictionary! {
                        "Subtype" => "Widget", "FT" => "Tx", "V" => utf16("Alice"),
                        "Rect" => rect(695), "AP" => dictionary! { "N" => empty },
                    }),
                    Object::Dictionary(
                        dictionary! { "Subtype" => "Widget", "Parent" => field, "Rect" => rect(600) },
                    ),
                    // A check box's value is a state name, not text.
                    Object::Dictionary(
                        dictionary! { "Subtype" => "Widget", "FT" => "Btn", "V" => "Yes", "Rect" => rect(500) },
                    ),
                ];
                dictionary! { "Annots" => annots }
            },
        );
        let got = extract_pages(&doc, 0).text;
        assert_eq!(got.trim(), "Name:\nAlice\nZürich", "{got}");
    }

    fn pdf_font() -> Dictionary {
        dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding" }
    }

    #[test]
    fn legacy_cjk_bytes_in_a_system_font_are_decoded_by_the_font_name() {
        // "宋体" (SimSun) in GBK, not embedded, shown through a one-byte font.
        let simsun = dictionary! {
            "Type" => "Font", "Subtype" => "TrueType", "BaseFont" => Object::Name(vec![0xcb, 0xce, 0xcc, 0xe5]),
            "Encoding" => "WinAnsiEncoding", "FirstChar" => 0, "LastChar" => 255, "Widths" => vec![Object::Integer(500); 256],
        };
        // "中文 PDF" in GBK.
        let content = "BT /F1 12 Tf 72 700 Td <D6D0CEC420504446> Tj ET";
        // One character and a space per string, each string one em further:
        // the overlapped spaces are not word breaks.
        let spaced = "BT /F1 12 Tf 72 700 Td <D6D020> Tj 12 0 Td <CEC420> Tj ET";
        assert_eq!(
            extract_pages(
                &pdf_with(spaced, &[], |_| simsun.clone(), |_, _| Dictionary::new()),
                0
            )
            .text
            .trim(),
            "中文"
        );
        assert_eq!(
            extract_pages(
                &pdf_with(content, &[], |_| simsun.clone(), |_, _| Dictionary::new()),
                0
            )
            .text
            .trim(),
            "中文 PDF"
        );
        // The same bytes in an embedded font are that font's business.
        let mut embedded = simsun;
        embedded.set(
            "FontDescriptor",
            dictionary! { "FontFile2" => Object::Null },
        );
        let got = extract_pages(
            &pdf_with(content, &[], |_| embedded, |_, _| Dictionary::new()),
            0,
        )
        .text;
        assert!(!got.contains("中文"), "{got}");
    }

    #[test]
    fn identity_cid_fonts_without_to_unicode_use_the_collection_table() {
        // The process's Korea1 table, as poppler-data's file would give it: CID 1 = 한, 2 = 국.
        let table = parse_cid_table("0000\nd55c\nad6d\n");
        assert_eq!(table, ['\0', '한', '국']);
        let _ = CID_TABLES[3].set(Some(table));
        let font = dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "Batang", "Encoding" => "Identity-H",
            "DescendantFonts" => vec![Object::Dictionary(dictionary! {
                "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "Batang", "DW" => 1000,
                "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Korea1"), "Supplement" => 0 },
            })],
        };
        let doc = pdf_with(
            "BT /F1 12 Tf 72 700 Td <00010002> Tj ET",
            &[],
            |_| font,
            |_, _| Dictionary::new(),
        );
        assert_eq!(extract_pages(&doc, 0).text.trim(), "한국");
    }

    #[test]
    fn vertical_writing_keeps_a_column_on_one_line() {
        // UniJIS-UCS2-V: codes are UTF-16BE, glyphs go down the page; the next column is a new line.
        let font = dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "Ryumin-Light", "Encoding" => "UniJIS-UCS2-V",
            "DescendantFonts" => vec![Object::Dictionary(dictionary! {
                "Type" => "Font", "Subtype" => "CIDFontType0", "BaseFont" => "Ryumin-Light",
                "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Japan1"), "Supplement" => 2 },
            })],
        };
        let content = "BT /F1 12 Tf 300 700 Td <65E5672C> Tj -20 0 Td <8A9E> Tj ET";
        assert_eq!(
            extract_pages(
                &pdf_with(content, &[], |_| font, |_, _| Dictionary::new()),
                0
            )
            .text
            .trim(),
            "日本\n語"
        );
    }

    #[test]
    fn an_embedded_type1_fonts_own_encoding_is_the_base() {
        // A TeX-style math font: no /Encoding in the PDF, the program's clear text says code 65 is gamma.
        let program = b"%!PS-AdobeFont-1.0: CMMI10\n/FontName /CMMI10 def\n/Encoding 256 array\n0 1 255 {1 index exch /.notdef put} for\n\
dup 65 /gamma put\ndup 66 /alpha put\nreadonly def\ncurrentdict end\ncurrentfile eexec\n\x8f\x01\x02";
        let cmmi = |doc: &mut Document| {
            let file = doc.add_object(Stream::new(
                dictionary! { "Length1" => 120 },
                program.to_vec(),
            ));
            dictionary! {
                "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "CMMI10",
                "FontDescriptor" => dictionary! { "Type" => "FontDescriptor", "FontName" => "CMMI10", "Flags" => 4, "FontFile" => file },
            }
        };
        let doc = pdf_with("BT /F1 12 Tf 72 700 Td (AB) Tj ET", &[], cmmi, |_, _| {
            Dictionary::new()
        });
        assert_eq!(extract_pages(&doc, 0).text.trim(), "γα");
    }

    #[test]
    fn ligatures_are_spelled_out() {
        assert_eq!(plain_letters("\u{fb01}"), "fi");
        assert_eq!(plain_letters("e\u{fb03}\u{1}cient"), "efficient");
    }

    #[test]
    fn right_to_left_lines_come_out_in_logical_order() {
        assert_eq!(visual_to_logical("םולש 2026 abc"), "abc 2026 שלום");
    }
}
