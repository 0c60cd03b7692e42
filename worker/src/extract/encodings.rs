//! Font encodings: predefined CJK CMaps, simple-font tables (base encoding
//! and Differences, glyph names), the built-in encodings of embedded Type 1
//! and CFF programs, legacy CJK system-font bytes and the Adobe CID tables.

use lopdf::{Dictionary, Document, Object};

use super::lexer::Ops;
use super::objects::*;

/// A predefined CMap whose codes are a legacy CJK encoding or UTF-16.
#[derive(Clone, Copy)]
pub(super) enum Predefined {
    /// `Uni*-UCS2-*` / `Uni*-UTF16-*`: codes are UTF-16BE.
    Utf16,
    /// Shift-JIS, EUC, GBK, Big5 or UHC codes: one byte below 0x80, else two.
    Legacy(&'static encoding_rs::Encoding),
}

impl Predefined {
    pub(super) fn from_name(name: &[u8]) -> Option<Self> {
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
    pub(super) fn split<'b>(&self, bytes: &'b [u8]) -> Vec<&'b [u8]> {
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

    pub(super) fn decode(&self, code: &[u8], out: &mut String) {
        let encoding = match self {
            Predefined::Utf16 => encoding_rs::UTF_16BE,
            Predefined::Legacy(e) => e,
        };
        out.push_str(&encoding.decode_without_bom_handling(code).0);
    }
}

/// A simple font's code -> text table: base encoding plus Differences, where
/// unknown glyph names leave a gap instead of spoiling the whole font.
pub(super) type SimpleTable = Box<[Option<char>; 256]>;

/// Decodes one byte through a throwaway font dictionary whose /Encoding is
/// `encoding` (lopdf keeps its glyph-name and base-encoding tables private).
pub(super) fn decode_with(doc: &Document, encoding: Object, byte: u8) -> Option<char> {
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
pub(super) fn glyph_char(doc: &Document, name: &[u8]) -> Option<char> {
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

pub(super) fn simple_table(doc: &Document, font: &Dictionary) -> SimpleTable {
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

/// The embedded font program under `key` (`FontFile`, `FontFile2`, `FontFile3`)
/// of a font's descriptor.
pub(super) fn font_program<'a>(
    doc: &'a Document,
    font: &Dictionary,
    key: &[u8],
) -> Option<&'a lopdf::Stream> {
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
pub(super) fn type1_builtin_encoding(
    doc: &Document,
    font: &Dictionary,
) -> Option<Vec<(u8, Vec<u8>)>> {
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
pub(super) fn cff_builtin_encoding(
    doc: &Document,
    font: &Dictionary,
) -> Option<Vec<(u8, Vec<u8>)>> {
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

/// A simple TrueType font that is not embedded and is named after a Chinese,
/// Japanese or Korean system font: old writers show such text as the legacy
/// multi-byte encoding's bytes through a one-byte font, leaving the decoding to
/// the viewer's installed font. The name says which encoding.
pub(super) fn legacy_cjk_font(
    doc: &Document,
    font: &Dictionary,
) -> Option<&'static encoding_rs::Encoding> {
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
pub(super) const CID_TABLE_DIRS: [&str; 2] = [
    "/usr/share/poppler/cidToUnicode",
    "/usr/local/share/poppler/cidToUnicode",
];

/// The CID -> Unicode table of an Adobe character collection (`Japan1`,
/// `GB1`, `CNS1`, `Korea1`), read once per process; `None` where the tables
/// are not installed.
pub(super) fn cid_to_unicode(ordering: &str) -> Option<&'static [char]> {
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

pub(super) const CID_ORDERINGS: [&str; 4] = ["Japan1", "GB1", "CNS1", "Korea1"];
pub(super) static CID_TABLES: [std::sync::OnceLock<Option<Vec<char>>>; 4] =
    [const { std::sync::OnceLock::new() }; 4];

/// One hexadecimal code point per line, the line number being the CID; a
/// line that is not one code point maps to nothing.
pub(super) fn parse_cid_table(text: &str) -> Vec<char> {
    text.lines()
        .map(|l| {
            u32::from_str_radix(l.trim(), 16)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\0')
        })
        .collect()
}
