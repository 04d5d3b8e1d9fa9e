//! Table URIs as checkpoints key them.

use leman_engine::{Error, normalize_uri};

#[test]
fn local_paths_become_absolute_and_unknown_schemes_are_refused() {
    let here = std::env::current_dir().unwrap();
    assert_eq!(normalize_uri("data/t.lance/").unwrap(), here.join("data/t.lance").to_string_lossy());
    assert_eq!(normalize_uri("file:///d/t.lance/").unwrap(), "file:///d/t.lance");
    assert!(matches!(normalize_uri(""), Err(Error::InvalidUri { .. })));
    let refused = normalize_uri("ftp://host/t.lance").unwrap_err().to_string();
    assert!(refused.contains("scheme ftp:// is not enabled"), "{refused}");
}
