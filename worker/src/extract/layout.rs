//! Text layout rules: which letters count, which scripts are written without
//! spaces, and right-to-left lines turned into logical order.

/// A glyph's text without control characters, with Latin ligatures (ﬁ, ﬀ,
/// ...) spelled out: words must read the same however they were typeset.
pub(super) fn plain_letters(glyph: &str) -> String {
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
pub(super) fn is_cjk(c: char) -> bool {
    matches!(u32::from(c), 0x3000..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF)
}

pub(super) fn is_rtl(c: char) -> bool {
    matches!(u32::from(c), 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF)
}

/// Reverses a visually ordered right-to-left line, keeping runs of
/// left-to-right letters and digits in their own order.
pub(super) fn visual_to_logical(line: &str) -> String {
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
