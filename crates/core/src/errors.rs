//! Errors in words, one formatter for the whole workspace.

/// An error and its causes as one line, outermost first, joined by ": ". A cause whose words
/// are already in the line (an I/O error repeated by the context around it, an SDK error
/// naming its own kind) is left out, as is one with no words: each cause is said once.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let words = cause.to_string();
        if !words.is_empty() && !text.contains(&words) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&words);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn each_cause_is_said_once_outermost_first() {
        let e = Layer(
            "reading pipelines.toml",
            Some(Box::new(Layer(
                "No such file or directory (os error 2)",
                Some(Box::new(Layer(
                    "No such file or directory (os error 2)",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            chain(&e),
            "reading pipelines.toml: No such file or directory (os error 2)"
        );
        let sdk = Layer("NotFound", Some(Box::new(Layer("NotFound", None))));
        assert_eq!(chain(&sdk), "NotFound");
        assert_eq!(
            chain(&Layer("", Some(Box::new(Layer("timed out", None))))),
            "timed out"
        );
    }
}
