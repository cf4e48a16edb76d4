//! Sizes of JSON values, as stored and as Lambda sends them.

/// The size of a JSON value, serialised, in bytes.
pub fn json_size(value: &impl serde::Serialize) -> usize {
    let mut counter = Counter::default();
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.bytes,
        Err(_) => usize::MAX,
    }
}

/// The size a JSON value takes once it is itself a JSON string, as an API answer's body is
/// inside Lambda's serialized invocation response: each `"` and `\` of it counts twice.
/// (Serialised JSON holds no raw control character, and the string escapes nothing else.)
pub fn escaped_json_size(value: &impl serde::Serialize) -> usize {
    let mut counter = Counter::default();
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.bytes + counter.escapes,
        Err(_) => usize::MAX,
    }
}

/// Counts what is written, and how many bytes of it a JSON string would escape.
#[derive(Default)]
struct Counter {
    bytes: usize,
    escapes: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        self.escapes += buf.iter().filter(|b| matches!(b, b'"' | b'\\')).count();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_escaped_size_is_what_the_body_takes_as_a_json_string() {
        for value in [
            json!({"quote": "she said \"hi\"", "path": "C:\\temp", "n": 1}),
            json!({"control": "a\nb\u{1}", "unicode": "é✓"}),
            json!([]),
        ] {
            let body = value.to_string();
            assert_eq!(json_size(&value), body.len());
            let as_string = serde_json::Value::String(body).to_string();
            // The string's own two quotes aside.
            assert_eq!(escaped_json_size(&value), as_string.len() - 2);
        }
    }
}
