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

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::annotations::*;
use super::fonts::*;
use super::layout::*;
use super::lexer::Ops;
use super::objects::*;

#[derive(Clone)]
pub(super) struct GraphicsState<'a> {
    pub(super) ctm: Matrix,
    pub(super) font: Option<Rc<Font<'a>>>,
    pub(super) size: f32,
    pub(super) char_spacing: f32,
    pub(super) word_spacing: f32,
    pub(super) h_scale: f32,
    pub(super) leading: f32,
    pub(super) rise: f32,
}

/// Where the previous glyph ended (device space), and its baseline direction.
#[derive(Clone, Copy)]
pub(super) struct Pen {
    pub(super) x: f32,
    pub(super) y: f32,
    pub(super) size: f32,
    /// Unit vector along the baseline.
    pub(super) ux: f32,
    pub(super) uy: f32,
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

pub(super) struct Interpreter<'a> {
    pub(super) doc: &'a Document,
    pub(super) fonts: HashMap<usize, Rc<Font<'a>>>,
    pub(super) out: String,
    pub(super) line_start: usize,
    /// Where the line before the current one starts.
    pub(super) prev_line_start: usize,
    pub(super) pen: Option<Pen>,
    pub(super) nonspace: usize,
    pub(super) budget: usize,
    pub(super) undecodable: usize,
    pub(super) forms: HashSet<ObjectId>,
}

impl<'a> Interpreter<'a> {
    pub(super) fn full(&self) -> bool {
        self.budget > 0 && self.nonspace >= self.budget
    }

    pub(super) fn font(
        &mut self,
        resources: Option<&'a Dictionary>,
        name: &[u8],
    ) -> Option<Rc<Font<'a>>> {
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

    pub(super) fn newline(&mut self) {
        self.finish_line();
        self.out.push('\n');
        self.prev_line_start = self.line_start;
        self.line_start = self.out.len();
    }

    /// Puts a right-to-left line into logical order.
    pub(super) fn finish_line(&mut self) {
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

    pub(super) fn show(&mut self, gs: &GraphicsState<'a>, tm: &mut Matrix, bytes: &[u8]) {
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

    pub(super) fn place(&mut self, x: f32, y: f32, size: f32, glyph: &str) {
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
    pub(super) fn write_lines(&mut self, text: &str) {
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
    pub(super) fn join_hyphenated(&mut self, glyph: &str) {
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

    pub(super) fn run(
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
                "Do" if depth < MAX_FORM_DEPTH => {
                    if let Some(name) = a.first().and_then(|o| o.as_name().ok()) {
                        self.form(resources, name, gs, depth);
                    }
                }
                _ => {}
            }
        }
        ops.first_error().map_or(Ok(()), |e| Err(e.to_owned()))
    }

    pub(super) fn form(
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
    pub(super) fn draw_form(
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

pub(super) fn page_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
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
mod tests;
