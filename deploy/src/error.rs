//! Why a spec was refused: one line, naming the key.

/// A spec that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read the cluster spec {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// What is wrong with the spec in file `path`.
    #[error("{path}: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<SpecError>,
    },
    /// The TOML does not parse.
    #[error("the cluster spec is not TOML: {reason} (line {line})")]
    Syntax { line: usize, reason: String },
    /// A key is unknown, missing or of the wrong type.
    #[error("cluster spec key {key}: {reason} (line {line})")]
    Key { key: String, line: usize, reason: String },
    /// A value is well-formed TOML but not a usable setting.
    #[error("cluster spec key {key}: {reason}")]
    Invalid { key: String, reason: String },
    /// The certificates to embed could not be read.
    #[error("cannot embed the certificates: {reason}")]
    Certs { reason: String },
    /// The manifests could not be written out.
    #[error("cannot render the manifests: {reason}")]
    Render { reason: String },
}

impl SpecError {
    pub(crate) fn syntax(text: &str, error: &toml::de::Error) -> Self {
        Self::Syntax { line: line_of(text, error.span()), reason: one_line(error.message()) }
    }

    pub(crate) fn key(text: &str, error: serde_path_to_error::Error<toml::de::Error>) -> Self {
        let line = line_of(text, error.inner().span());
        let path = error.path().to_string();
        let key = if path == "." { "(top level)".to_string() } else { path };
        Self::Key { key, line, reason: one_line(error.inner().message()) }
    }
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    span.map(|span| text.get(..span.start).map_or(0, |before| before.matches('\n').count()) + 1).unwrap_or(0)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
