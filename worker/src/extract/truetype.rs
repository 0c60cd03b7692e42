//! The text of an Identity-encoded CID font without a ToUnicode map, read
//! from its embedded TrueType (`FontFile2`) or OpenType (`FontFile3`,
//! `/Subtype /OpenType`) program, as poppler and pdf.js do: codes are CIDs,
//! CIDs become glyph ids (the CIDFontType2's `CIDToGIDMap`, or an OpenType
//! CFF's charset), and glyph ids become characters by inverting the
//! program's `cmap` subtables, or through its glyph names (`post`, or CFF
//! charset) where no subtable reaches a glyph.
//!
//! The result has the shape of the Adobe collections' tables in
//! [`super::encodings::cid_to_unicode`]: one character per CID, `'\0'` where
//! there is none, at most [`MAX_ENTRIES`] long.

use lopdf::{Dictionary, Document, Object};
use ttf_parser::cmap::Subtable;
use ttf_parser::{GlyphId, PlatformId, RawFace, Tag};

use super::encodings::{font_program, glyph_char};
use super::objects::stream_bytes;

/// CIDs and glyph ids are 16-bit: no table is longer.
pub(super) const MAX_ENTRIES: usize = 1 << 16;

/// The character of each CID of `cid_font` (the Type0 font's descendant)
/// through its embedded font program; `None` when there is no TrueType or
/// OpenType program, or nothing in it maps to text.
pub(super) fn cid_table(doc: &Document, cid_font: &Dictionary) -> Option<Vec<char>> {
    let (stream, opentype) = match font_program(doc, cid_font, b"FontFile2") {
        Some(s) => (s, false),
        None => {
            let s = font_program(doc, cid_font, b"FontFile3")?;
            let subtype = s.dict.get(b"Subtype").and_then(Object::as_name).ok();
            if subtype != Some(b"OpenType".as_slice()) {
                return None;
            }
            (s, true)
        }
    };
    let data = stream_bytes(stream)?;
    let program = Program::parse(&data)?;
    let glyphs = program.glyph_chars(doc);
    let Some(glyphs) = glyphs else {
        tracing::debug!(
            opentype,
            "embedded font program has no cmap or glyph names to read"
        );
        return None;
    };
    let cff = program
        .table(b"CFF ")
        .and_then(ttf_parser::cff::Table::parse);
    let table = match cid_to_gid(doc, cid_font, cff.as_ref()) {
        CidToGid::Identity => glyphs,
        CidToGid::Map(gids) => gids
            .iter()
            .map(|g| glyphs.get(usize::from(*g)).copied().unwrap_or('\0'))
            .collect(),
    };
    trimmed(table)
}

/// How CIDs become glyph ids.
enum CidToGid {
    /// The CID is the glyph id.
    Identity,
    /// The glyph id of each CID.
    Map(Vec<u16>),
}

/// A CIDFontType2's `CIDToGIDMap` (absent or `/Identity`: identity; a stream
/// of big-endian glyph ids indexed by CID), or for a CID-keyed CFF program
/// its charset inverted.
fn cid_to_gid(
    doc: &Document,
    cid_font: &Dictionary,
    cff: Option<&ttf_parser::cff::Table<'_>>,
) -> CidToGid {
    if let Some(cff) = cff {
        let glyphs = cff.number_of_glyphs();
        let mut gids = Vec::new();
        for gid in 0..glyphs {
            let Some(cid) = cff.glyph_cid(GlyphId(gid)) else {
                // Not CID-keyed: CIDs are glyph ids.
                return CidToGid::Identity;
            };
            let cid = usize::from(cid);
            if gids.len() <= cid {
                gids.resize(cid + 1, 0);
            }
            gids[cid] = gid;
        }
        return CidToGid::Map(gids);
    }
    let map = cid_font
        .get(b"CIDToGIDMap")
        .ok()
        .and_then(|o| doc.dereference(o).ok())
        .map(|(_, o)| o);
    match map {
        Some(Object::Stream(s)) => match stream_bytes(s) {
            Some(bytes) => CidToGid::Map(
                bytes
                    .chunks_exact(2)
                    .take(MAX_ENTRIES)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect(),
            ),
            None => {
                tracing::debug!("unreadable CIDToGIDMap stream: taken as identity");
                CidToGid::Identity
            }
        },
        _ => CidToGid::Identity,
    }
}

/// A parsed sfnt font program: its bytes and table directory.
struct Program<'d> {
    face: RawFace<'d>,
}

impl<'d> Program<'d> {
    fn parse(data: &'d [u8]) -> Option<Self> {
        match RawFace::parse(data, 0) {
            Ok(face) => Some(Program { face }),
            Err(e) => {
                tracing::debug!(error = %e, "embedded font program is not a TrueType/OpenType font");
                None
            }
        }
    }

    /// A table's bytes. Searched in order rather than by ttf-parser's binary
    /// search, as PDF writers do not always sort the directory; a length
    /// running past the end is cut to the data.
    fn table(&self, tag: &[u8; 4]) -> Option<&'d [u8]> {
        let tag = Tag::from_bytes(tag);
        let record = self.face.table_records.into_iter().find(|r| r.tag == tag)?;
        let data = self.face.data;
        let start = usize::try_from(record.offset).ok()?;
        let end = start
            .saturating_add(usize::try_from(record.length).ok()?)
            .min(data.len());
        data.get(start..end)
    }

    /// The character of each glyph id (`'\0'`: none), `None` when no glyph
    /// has one.
    fn glyph_chars(&self, doc: &Document) -> Option<Vec<char>> {
        let count = self
            .table(b"maxp")
            .and_then(ttf_parser::maxp::Table::parse)
            .map_or(MAX_ENTRIES, |m| usize::from(m.number_of_glyphs.get()));
        let mut chars = vec!['\0'; count];
        if let Some(cmap) = self.table(b"cmap").and_then(ttf_parser::cmap::Table::parse) {
            let subtables: Vec<Subtable<'_>> = cmap.subtables.into_iter().collect();
            // Unicode subtables first, then a symbolic (3,0) one, then Mac Roman (1,0):
            // each only fills glyphs the ones before left without text.
            for s in subtables.iter().filter(|s| s.is_unicode()) {
                fill_unicode(s, &mut chars);
            }
            for s in subtables
                .iter()
                .filter(|s| s.platform_id == PlatformId::Windows && s.encoding_id == 0)
            {
                fill_bytes(s, 0xF000, encoding_rs::WINDOWS_1252, &mut chars);
                fill_bytes(s, 0, encoding_rs::WINDOWS_1252, &mut chars);
            }
            for s in subtables
                .iter()
                .filter(|s| s.platform_id == PlatformId::Macintosh && s.encoding_id == 0)
            {
                fill_bytes(s, 0, encoding_rs::MACINTOSH, &mut chars);
            }
        }
        self.fill_glyph_names(doc, &mut chars);
        if let Some(c) = chars.first_mut() {
            // Glyph 0 is .notdef.
            *c = '\0';
        }
        trimmed(chars)
    }

    /// Glyphs still without text, through their names: the `post` table's
    /// (version 2), else a CFF program's charset.
    fn fill_glyph_names(&self, doc: &Document, chars: &mut [char]) {
        let mut set = |gid: usize, name: &str| {
            if let Some(slot) = chars.get_mut(gid).filter(|c| **c == '\0') {
                if let Some(c) = glyph_char(doc, name.as_bytes()).filter(|c| usable(*c)) {
                    *slot = c;
                }
            }
        };
        // Only a version 2 table names glyphs (version 3, usual in OpenType
        // CFF fonts, leaves the names to the CFF charset).
        let post = self
            .table(b"post")
            .filter(|data| data.get(0..4) == Some(&[0, 2, 0, 0]))
            .and_then(|data| Some((data, ttf_parser::post::Table::parse(data)?)));
        if let Some((data, post)) = post {
            // ttf-parser looks up a name of the font's own list from the start
            // of the list each time: read the glyphs' name indexes here (count
            // at 32, then one u16 per glyph) and walk the list once.
            let own: Vec<&str> = post.names().take(MAX_ENTRIES).collect();
            let count = data
                .get(32..34)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            let indexes = data.get(34..).unwrap_or_default();
            for (gid, pair) in indexes.chunks_exact(2).take(count).enumerate() {
                let index = usize::from(u16::from_be_bytes([pair[0], pair[1]]));
                let name = match index.checked_sub(258) {
                    // A standard Macintosh name: ttf-parser's table.
                    None => u16::try_from(gid)
                        .ok()
                        .and_then(|g| post.glyph_name(GlyphId(g))),
                    Some(i) => own.get(i).copied(),
                };
                if let Some(name) = name {
                    set(gid, name);
                }
            }
            return;
        }
        if let Some(cff) = self.table(b"CFF ").and_then(ttf_parser::cff::Table::parse) {
            for gid in 1..cff.number_of_glyphs() {
                if let Some(name) = cff.glyph_name(GlyphId(gid)) {
                    set(usize::from(gid), name);
                }
            }
        }
    }
}

/// Fills glyphs from a Unicode subtable by asking it for every code point
/// in turn (rather than trusting its own list of ranges, which a broken font
/// can make billions long). Ascending order keeps the smallest code point of
/// a glyph several map to (U+0020 over U+00A0, `-` over the soft hyphen), and
/// private-use code points come last, so a glyph that also has a real one
/// keeps it.
fn fill_unicode(subtable: &Subtable<'_>, chars: &mut [char]) {
    let supplementary = matches!(
        subtable.format,
        ttf_parser::cmap::Format::SegmentedCoverage(_)
            | ttf_parser::cmap::Format::ManyToOneRangeMappings(_)
    );
    let ranges = [
        0x20..0xE000,
        0xF900..0x1_0000,
        if supplementary {
            0x1_0000..0x3_0000
        } else {
            0..0
        },
        0xE000..0xF900,
    ];
    for code in ranges.into_iter().flatten() {
        let Some(c) = char::from_u32(code).filter(|c| usable(*c)) else {
            continue;
        };
        if let Some(gid) = subtable.glyph_index(code) {
            if let Some(slot) = chars.get_mut(usize::from(gid.0)).filter(|s| **s == '\0') {
                *slot = c;
            }
        }
    }
}

/// Fills glyphs from a subtable whose codes are one-byte characters of
/// `encoding`, at `base + byte` (a symbolic (3,0) subtable's 0xF000 page, or
/// a Mac Roman (1,0) subtable's bytes).
fn fill_bytes(
    subtable: &Subtable<'_>,
    base: u32,
    encoding: &'static encoding_rs::Encoding,
    chars: &mut [char],
) {
    for byte in 0x20..=0xFFu8 {
        let Some(gid) = subtable.glyph_index(base + u32::from(byte)) else {
            continue;
        };
        let bytes = [byte];
        let (text, _, bad) = encoding.decode(&bytes);
        let mut decoded = text.chars();
        let (Some(c), None, false) = (decoded.next(), decoded.next(), bad) else {
            continue;
        };
        if let Some(slot) = chars
            .get_mut(usize::from(gid.0))
            .filter(|s| **s == '\0' && usable(c))
        {
            *slot = c;
        }
    }
}

/// A character worth putting in text: not a control character, not a
/// noncharacter or the replacement character.
fn usable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{FFFD}' | '\u{FFFE}' | '\u{FFFF}' | '\u{FDD0}'..='\u{FDEF}'
        )
}

/// The table without its trailing gaps, at most [`MAX_ENTRIES`] long; `None`
/// when nothing is left.
fn trimmed(mut table: Vec<char>) -> Option<Vec<char>> {
    table.truncate(MAX_ENTRIES);
    let len = table.iter().rposition(|c| *c != '\0')? + 1;
    table.truncate(len);
    Some(table)
}

#[cfg(test)]
mod tests {
    use lopdf::{dictionary, Object, Stream};

    /// One sfnt table: tag and bytes.
    type Table = ([u8; 4], Vec<u8>);

    /// A TrueType font program of `glyphs` empty glyphs with the given
    /// tables besides the `head`, `hhea` and `maxp` every font has.
    fn font_program(glyphs: u16, extra: Vec<Table>) -> Vec<u8> {
        let mut head = vec![0u8; 54];
        head[0..4].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // version
        head[12..16].copy_from_slice(&0x5F0F_3CF5u32.to_be_bytes()); // magic
        head[18..20].copy_from_slice(&1000u16.to_be_bytes()); // unitsPerEm
        let mut hhea = vec![0u8; 36];
        hhea[0..4].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        hhea[34..36].copy_from_slice(&1u16.to_be_bytes()); // numberOfHMetrics
        let mut maxp = 0x0000_5000u32.to_be_bytes().to_vec(); // version 0.5
        maxp.extend(glyphs.to_be_bytes());
        let mut tables: Vec<Table> = vec![(*b"head", head), (*b"hhea", hhea), (*b"maxp", maxp)];
        tables.extend(extra);
        tables.sort_by_key(|(tag, _)| *tag);

        let mut out = 0x0001_0000u32.to_be_bytes().to_vec();
        out.extend((tables.len() as u16).to_be_bytes());
        out.extend([0u8; 6]); // searchRange, entrySelector, rangeShift
        let mut offset = 12 + 16 * tables.len();
        for (tag, data) in &tables {
            out.extend(tag);
            out.extend(0u32.to_be_bytes()); // checksum
            out.extend((offset as u32).to_be_bytes());
            out.extend((data.len() as u32).to_be_bytes());
            offset += data.len().next_multiple_of(4);
        }
        for (_, data) in &tables {
            out.extend(data);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out
    }

    /// A `cmap` table with one (3,1) format 4 subtable: each segment maps
    /// `first..=last` to consecutive glyphs from `glyph`.
    fn cmap(segments: &[(u16, u16, u16)]) -> Table {
        let mut segments = segments.to_vec();
        segments.push((0xFFFF, 0xFFFF, 0)); // the required last segment
        let n = segments.len() as u16;
        let mut sub = Vec::new();
        sub.extend(4u16.to_be_bytes()); // format
        sub.extend((16 + 8 * n).to_be_bytes()); // length
        sub.extend(0u16.to_be_bytes()); // language
        sub.extend((2 * n).to_be_bytes()); // segCountX2
        sub.extend([0u8; 6]); // searchRange, entrySelector, rangeShift
        segments.iter().for_each(|s| sub.extend(s.1.to_be_bytes()));
        sub.extend(0u16.to_be_bytes()); // reservedPad
        segments.iter().for_each(|s| sub.extend(s.0.to_be_bytes()));
        for (first, _, glyph) in &segments {
            // idDelta: glyph = code + delta (mod 65536); the last segment maps to 0.
            let delta = if *glyph == 0 {
                1
            } else {
                glyph.wrapping_sub(*first)
            };
            sub.extend(delta.to_be_bytes());
        }
        segments.iter().for_each(|_| sub.extend(0u16.to_be_bytes())); // idRangeOffset
        let mut table = Vec::new();
        table.extend(0u16.to_be_bytes()); // version
        table.extend(1u16.to_be_bytes()); // one subtable
        table.extend(3u16.to_be_bytes()); // Windows
        table.extend(1u16.to_be_bytes()); // Unicode BMP
        table.extend(12u32.to_be_bytes()); // offset
        table.extend(sub);
        (*b"cmap", table)
    }

    /// A `post` table version 2 naming glyph `i` `names[i]`.
    fn post(names: &[&str]) -> Table {
        let mut table = 0x0002_0000u32.to_be_bytes().to_vec();
        table.resize(32, 0);
        table.extend((names.len() as u16).to_be_bytes());
        for i in 0..names.len() {
            table.extend((258 + i as u16).to_be_bytes());
        }
        for name in names {
            table.push(name.len() as u8);
            table.extend(name.as_bytes());
        }
        (*b"post", table)
    }

    /// A one-page PDF showing `codes` (two bytes each) in an Identity-H
    /// Type0 font whose CIDFontType2 embeds `program`, with `cid_to_gid` as
    /// its CIDToGIDMap (a stream of glyph ids) when given.
    fn pdf(program: Vec<u8>, cid_to_gid: Option<&[u16]>, codes: &[u16]) -> Vec<u8> {
        let mut doc = lopdf::Document::with_version("1.7");
        let file = doc.add_object(Stream::new(dictionary! {}, program));
        let descriptor = doc.add_object(dictionary! {
            "Type" => "FontDescriptor",
            "FontName" => "Test",
            "Flags" => 4,
            "FontFile2" => file,
        });
        let mut cid_font = dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType2",
            "BaseFont" => "Test",
            "CIDSystemInfo" => dictionary! {
                "Registry" => Object::string_literal("Adobe"),
                "Ordering" => Object::string_literal("Identity"),
                "Supplement" => 0,
            },
            "FontDescriptor" => descriptor,
        };
        if let Some(map) = cid_to_gid {
            let bytes = map.iter().flat_map(|g| g.to_be_bytes()).collect();
            cid_font.set(
                "CIDToGIDMap",
                doc.add_object(Stream::new(dictionary! {}, bytes)),
            );
        }
        let cid_font = doc.add_object(cid_font);
        let font = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type0",
            "BaseFont" => "Test",
            "Encoding" => "Identity-H",
            "DescendantFonts" => vec![cid_font.into()],
        });
        let hex: String = codes.iter().map(|c| format!("{c:04X}")).collect();
        let content = format!("BT /F1 12 Tf 72 700 Td <{hex}> Tj ET");
        let contents = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let pages = doc.new_object_id();
        let page = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages,
            "MediaBox" => vec![0.into(), 0.into(), 600.into(), 800.into()],
            "Contents" => contents,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        });
        doc.objects.insert(
            pages,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => vec![page.into()],
                "Count" => 1,
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        doc.save_to(&mut out).expect("in-memory PDF");
        out
    }

    fn text(pdf: &[u8]) -> Option<String> {
        crate::extract::extract(pdf, 0)
            .ok()
            .map(|x| x.text.trim().to_owned())
    }

    /// 'A'..='Z' on glyphs 1..=26, the space on glyph 27, glyphs 28 and 29
    /// outside the cmap.
    fn alphabet_font(extra: Vec<Table>) -> Vec<u8> {
        let mut tables = vec![cmap(&[(0x20, 0x20, 27), (0x41, 0x5A, 1)])];
        tables.extend(extra);
        font_program(30, tables)
    }

    /// Glyph ids of `text` in [`alphabet_font`].
    fn glyphs(text: &str) -> Vec<u16> {
        text.bytes()
            .map(|b| {
                if b == b' ' {
                    27
                } else {
                    u16::from(b - b'A' + 1)
                }
            })
            .collect()
    }

    #[test]
    fn identity_codes_are_glyph_ids_read_through_the_program_cmap() {
        let pdf = pdf(alphabet_font(vec![]), None, &glyphs("HELLO WORLD"));
        assert_eq!(text(&pdf).as_deref(), Some("HELLO WORLD"));
    }

    #[test]
    fn a_cid_to_gid_map_stream_leads_codes_to_glyphs() {
        // CID i shows glyph 27 - i: CID 26 is 'A', CID 1 is 'Z', CID 0 the space.
        let map: Vec<u16> = (0..=26).map(|cid| 27 - cid).collect();
        let cids: Vec<u16> = glyphs("ZEBRA").iter().map(|g| 27 - g).collect();
        let pdf = pdf(alphabet_font(vec![]), Some(&map), &cids);
        assert_eq!(text(&pdf).as_deref(), Some("ZEBRA"));
    }

    #[test]
    fn glyphs_the_cmap_misses_are_read_by_their_post_names() {
        // Glyphs 28 and 29 are outside the cmap, named "eacute" (a glyph
        // list name) and "uni0152".
        let mut names = vec![".notdef"; 28];
        names.extend(["eacute", "uni0152"]);
        let program = alphabet_font(vec![post(&names)]);
        let mut codes = glyphs("CAF");
        codes.extend([28, 27, 29]);
        let pdf = pdf(program, None, &codes);
        assert_eq!(text(&pdf).as_deref(), Some("CAF\u{e9} \u{152}"));
    }

    #[test]
    fn a_program_without_cmap_or_names_still_reads_as_undecodable() {
        let pdf = pdf(font_program(28, vec![]), None, &glyphs("HELLO"));
        assert!(matches!(
            crate::extract::extract(&pdf, 0),
            Err(crate::extract::ExtractError::Undecodable { .. })
        ));
    }
}
