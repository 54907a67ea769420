//! An error as a person reads it: one line, the error and its causes, each
//! said once (the innermost, such as "connection refused", is often the
//! useful one). Used by the CLI and by the stores' errors.

/// An error and its causes on one line, each cause once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: inner")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let e = Outer(Inner(std::io::Error::other("connection refused")));
        assert_eq!(error_chain(&e), "outer: inner: connection refused");
    }
}
