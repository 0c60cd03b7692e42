//! Annotations as a viewer draws them: form fields, free text and stamps,
//! with their normal appearances placed on the page (ISO 32000 12.5.5).

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::objects::*;

/// A page's visible annotation, as a viewer draws it.
pub(super) struct Annotation {
    /// The normal appearance and the matrix that places it on the page.
    pub(super) appearance: Option<(ObjectId, Matrix)>,
    /// A text or choice field's value, for when the appearance shows no text:
    /// form fillers often set the value and leave the appearance for the
    /// viewer to regenerate (`NeedAppearances`).
    pub(super) value: Option<String>,
}

/// The value of the form field behind a widget annotation, when it is a text
/// or choice field (inherited attributes read up the `Parent` chain).
pub(super) fn field_value(doc: &Document, widget: &Dictionary) -> Option<String> {
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
pub(super) fn annotations(doc: &Document, page: ObjectId) -> Vec<Annotation> {
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
pub(super) fn appearance_placement(
    doc: &Document,
    annot: &Dictionary,
) -> Option<(ObjectId, Matrix)> {
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
