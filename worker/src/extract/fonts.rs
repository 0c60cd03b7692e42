//! Fonts as the extractor needs them: advance widths, and how each code
//! becomes text (ToUnicode first, then the encodings in [`super::encodings`],
//! or an embedded program's own cmap in [`super::truetype`]).

use std::borrow::Cow;
use std::collections::HashMap;

use lopdf::{Dictionary, Document, Encoding, Object};

use super::encodings::*;
use super::objects::*;
use super::tounicode::ToUnicode;
use super::truetype;

/// Glyph advance widths of a font, in thousandths of text space.
pub(super) enum Widths {
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
    pub(super) fn get(&self, code: u32) -> f32 {
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

/// What the extractor needs of a font.
pub(super) struct Font<'a> {
    /// The font's ToUnicode map, read by docsort (first choice).
    pub(super) to_unicode: Option<ToUnicode>,
    pub(super) encoding: Option<Encoding<'a>>,
    /// Simple fonts: the code table (used when there is no ToUnicode, or it lacks a code).
    pub(super) simple: Option<SimpleTable>,
    /// Codes of a predefined CJK CMap (no ToUnicode).
    pub(super) predefined: Option<Predefined>,
    /// Codes are two bytes (Type0 / CID fonts).
    pub(super) two_byte: bool,
    /// Identity-encoded CID font without ToUnicode: codes are CIDs, mapped
    /// through the Adobe collection's table, else through the embedded
    /// TrueType/OpenType program ([`super::truetype`]).
    pub(super) cid_table: Option<Cow<'static, [char]>>,
    /// Vertical writing mode (a `-V` CMap): glyphs advance downwards.
    pub(super) vertical: bool,
    pub(super) widths: Widths,
    /// Glyph space to text space (1/1000 except Type3).
    pub(super) scale: f32,
}

impl Font<'_> {
    pub(super) fn decode(&self, code: &[u8], out: &mut String) {
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
        if let (Some(table), [high, low]) = (self.cid_table.as_deref(), code) {
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

pub(super) fn load_font<'a>(doc: &'a Document, font: &'a Dictionary) -> Font<'a> {
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
        let collection = match (text(b"Registry").as_deref(), text(b"Ordering")) {
            (Some("Adobe"), Some(ordering)) => cid_to_unicode(&ordering),
            _ => None,
        };
        // The collection's table first; for `Identity` and unknown orderings,
        // or where the tables are not installed, the font program's own cmap.
        collection.map(Cow::Borrowed).or_else(|| {
            descendant
                .and_then(|d| truetype::cid_table(doc, d))
                .map(Cow::Owned)
        })
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
