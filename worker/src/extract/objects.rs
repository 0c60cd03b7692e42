//! PDF object helpers shared by the extractor: matrices, numbers,
//! dictionaries and arrays through references, and stream contents within
//! the size cap. Depends on nothing else in `extract`.

use lopdf::{Dictionary, Document, Object};

pub(super) type Matrix = [f32; 6];
pub(super) const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
/// Form XObjects (and other chains of objects) nested deeper than this are skipped.
pub(super) const MAX_FORM_DEPTH: usize = 12;
/// Decompressed content per stream, at most.
pub(super) const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;

/// `a × b` (PDF row-vector convention: apply `a`, then `b`).
pub(super) fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

pub(super) fn num(o: &Object) -> Option<f32> {
    match o {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) => Some(*r),
        _ => None,
    }
}

pub(super) fn nums<const N: usize>(ops: &[Object]) -> Option<[f32; N]> {
    if ops.len() < N {
        return None;
    }
    let mut out = [0.0; N];
    for (i, o) in ops[ops.len() - N..].iter().enumerate() {
        out[i] = num(o)?;
    }
    Some(out)
}

/// A dictionary, a stream's dictionary, or either behind one reference.
pub(super) fn dict<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Dictionary> {
    let o = match o {
        Object::Reference(id) => doc.get_object(*id).ok()?,
        other => other,
    };
    match o {
        Object::Dictionary(d) => Some(d),
        Object::Stream(s) => Some(&s.dict),
        _ => None,
    }
}

pub(super) fn array<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Vec<Object>> {
    match o {
        Object::Array(a) => Some(a),
        Object::Reference(id) => doc.get_object(*id).ok().and_then(|o| o.as_array().ok()),
        _ => None,
    }
}

/// A stream's decoded content within the size cap, or its bytes as they are
/// when it has no filter (lopdf reports those as undecodable).
pub(super) fn stream_bytes(stream: &lopdf::Stream) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::{dictionary, Stream};

    #[test]
    fn dict_follows_a_reference_to_a_dictionary_or_a_stream() {
        let mut doc = Document::with_version("1.5");
        let plain = doc.add_object(dictionary! { "Type" => "Font" });
        let stream = doc.add_object(Stream::new(
            dictionary! { "Subtype" => "Image", "Width" => 7 },
            vec![0; 7],
        ));
        let number = doc.add_object(3);
        let name = |o: Object| {
            dict(&doc, &o)
                .and_then(|d| d.get(b"Subtype").or_else(|_| d.get(b"Type")).ok())
                .and_then(|n| n.as_name().ok())
                .map(<[u8]>::to_vec)
        };
        assert_eq!(name(Object::Reference(plain)), Some(b"Font".to_vec()));
        assert_eq!(name(Object::Reference(stream)), Some(b"Image".to_vec()));
        assert_eq!(name(Object::Reference(number)), None);
        assert_eq!(name(Object::Reference((99, 0))), None);
    }
}
