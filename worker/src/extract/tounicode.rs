//! ToUnicode CMaps (ISO 32000 9.10.3), read tolerantly with the content
//! stream lexer: `bfchar` and `bfrange` entries, whatever else surrounds them.
//! lopdf's parser rejects whole maps over details that viewers accept (one
//! such map costs a 24-page manual all of its text).

use std::collections::HashMap;

use lopdf::Object;

use super::lexer::Ops;

/// A range this long or longer is hostile input, not a font.
const MAX_RANGE: u32 = 0x1_0000;

/// Character codes to text.
#[derive(Debug, Default)]
pub(crate) struct ToUnicode {
    map: HashMap<u32, String>,
}

fn code_of(bytes: &[u8]) -> Option<u32> {
    (!bytes.is_empty() && bytes.len() <= 4)
        .then(|| bytes.iter().fold(0u32, |c, b| (c << 8) | u32::from(*b)))
}

fn utf16(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks(2)
        .map(|p| {
            if p.len() == 2 {
                u16::from_be_bytes([p[0], p[1]])
            } else {
                u16::from(p[0])
            }
        })
        .collect()
}

impl ToUnicode {
    /// Reads a CMap stream's (decompressed) content; `None` when it maps nothing.
    pub(crate) fn parse(data: &[u8]) -> Option<Self> {
        let mut map = HashMap::new();
        let mut ops = Ops::new(data);
        while let Some((op, args)) = ops.next_op() {
            match op {
                "endbfchar" => {
                    for pair in args.chunks_exact(2) {
                        if let (Object::String(code, _), Object::String(text, _)) =
                            (&pair[0], &pair[1])
                        {
                            if let Some(code) = code_of(code) {
                                map.insert(code, String::from_utf16_lossy(&utf16(text)));
                            }
                        }
                    }
                }
                "endbfrange" => {
                    for entry in args.chunks_exact(3) {
                        let (Object::String(lo, _), Object::String(hi, _)) = (&entry[0], &entry[1])
                        else {
                            continue;
                        };
                        let (Some(lo), Some(hi)) = (code_of(lo), code_of(hi)) else {
                            continue;
                        };
                        if hi < lo || hi - lo >= MAX_RANGE {
                            continue;
                        }
                        match &entry[2] {
                            // Consecutive codes: the last UTF-16 unit counts up.
                            Object::String(start, _) => {
                                let mut units = utf16(start);
                                let Some(&last) = units.last() else { continue };
                                for (i, code) in (lo..=hi).enumerate() {
                                    if let Some(u) = units.last_mut() {
                                        *u = last.wrapping_add(i as u16);
                                    }
                                    map.insert(code, String::from_utf16_lossy(&units));
                                }
                            }
                            // One destination per code.
                            Object::Array(items) => {
                                for (code, item) in (lo..=hi).zip(items) {
                                    if let Object::String(text, _) = item {
                                        map.insert(code, String::from_utf16_lossy(&utf16(text)));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        (!map.is_empty()).then_some(ToUnicode { map })
    }

    /// The text of one character code.
    pub(crate) fn get(&self, code: u32) -> Option<&str> {
        self.map.get(&code).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_ranges_and_arrays() {
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /Test-cmap def /CMapType 2 def
1 begincodespacerange <0000> <FFFF> endcodespacerange
3 beginbfchar <0003> <0020> <0010> <FB01> <0011> <D835DC00> endbfchar
2 beginbfrange <0024> <0026> <0041> <0030> <0031> [<0066 0066> <00E9>] endbfrange
endcmap CMapName currentdict /CMap defineresource pop end end";
        let t = ToUnicode::parse(cmap).expect("a map");
        assert_eq!(t.get(0x03), Some(" "));
        assert_eq!(t.get(0x10), Some("ﬁ"));
        assert_eq!(t.get(0x11), Some("𝐀"));
        assert_eq!(
            (t.get(0x24), t.get(0x25), t.get(0x26)),
            (Some("A"), Some("B"), Some("C"))
        );
        assert_eq!((t.get(0x30), t.get(0x31)), (Some("ff"), Some("é")));
        assert_eq!(t.get(0x27), None);
    }

    #[test]
    fn nothing_mapped_is_none_and_huge_ranges_are_refused() {
        assert!(ToUnicode::parse(b"begincmap endcmap").is_none());
        assert!(
            ToUnicode::parse(b"1 beginbfrange <00000000> <FFFFFFFF> <0041> endbfrange").is_none()
        );
    }
}
