//! Storage options: secrets never shown.

use leman_engine::{REDACTED, StorageOptions, is_secret};

#[test]
fn secrets_are_recognised_by_their_key() {
    for key in [
        "aws_secret_access_key",
        "AWS_SECRET_ACCESS_KEY",
        "secret_access_key",
        "aws_session_token",
        "session_token",
        "token",
        "azure_storage_account_key",
        "account_key",
        "azure_storage_sas_key",
        "google_service_account_key",
        "google_application_credentials",
    ] {
        assert!(is_secret(key), "{key} is a secret");
    }
    for key in ["aws_access_key_id", "aws_endpoint", "aws_region", "allow_http", "azure_storage_account_name"] {
        assert!(!is_secret(key), "{key} is not a secret");
    }
}

#[test]
fn debug_and_redacted_never_show_a_secret() {
    let options = StorageOptions::new()
        .with("aws_endpoint", "http://127.0.0.1:9000")
        .with("aws_secret_access_key", "hunter2")
        .with("aws_session_token", "tok-123");
    let shown = format!("{options:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("tok-123"), "{shown}");
    assert!(shown.contains("http://127.0.0.1:9000"), "{shown}");
    let redacted = options.redacted();
    assert_eq!(redacted["aws_secret_access_key"], REDACTED);
    assert_eq!(redacted["aws_session_token"], REDACTED);
    assert_eq!(redacted["aws_endpoint"], "http://127.0.0.1:9000");
    assert_eq!(options.get("aws_secret_access_key"), Some("hunter2"), "the options themselves keep the secret");
}
