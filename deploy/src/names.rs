//! The names Kubernetes accepts: DNS-1123 labels and subdomains, label
//! keys and values, environment variable names. Each check says what is
//! wrong in words a user can act on.

/// A DNS-1123 label: at most 63 lower-case letters, digits and `-`,
/// starting and ending with a letter or digit (namespaces, group names).
pub fn label(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("{name:?} is not a DNS-1123 label: it must have 1 to 63 characters"));
    }
    let ok_inside = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let ok_edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    if !bytes.iter().all(|&b| ok_inside(b)) || !ok_edge(bytes[0]) || !ok_edge(bytes[bytes.len() - 1]) {
        return Err(format!(
            "{name:?} is not a DNS-1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A DNS-1123 label that starts with a letter, so that the Services named
/// after it are valid too (the cluster's name).
pub fn label_starting_with_a_letter(name: &str) -> Result<(), String> {
    label(name)?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("{name:?} must start with a letter: Service names are derived from it"));
    }
    if name.len() > 40 {
        return Err(format!("{name:?} is longer than 40 characters: the names derived from it would pass 63"));
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters
/// (Secrets, service accounts, priority classes).
pub fn subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a DNS-1123 subdomain: it must have 1 to 253 characters"));
    }
    name.split('.').try_for_each(label).map_err(|_| {
        format!("{name:?} is not a DNS-1123 subdomain: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit")
    })
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`,
/// then a name of at most 63 letters, digits, `-`, `_` and `.`.
pub fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        subdomain(prefix).map_err(|reason| format!("the prefix of key {key:?}: {reason}"))?;
    }
    if name.is_empty() || name.len() > 63 || !qualified(name) {
        return Err(format!(
            "{key:?} is not a valid key: its name must have 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`
/// starting and ending with a letter or digit.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 || !qualified(value) {
        return Err(format!(
            "{value:?} is not a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// An environment variable name.
pub fn env_name(name: &str) -> Result<(), String> {
    let first_ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '-' || c == '.');
    if !first_ok || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    Ok(())
}

fn qualified(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_alphanumeric();
    bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && edge(bytes[0])
        && edge(bytes[bytes.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_1123_labels_and_subdomains() {
        for good in ["leman", "gpu-a100", "a", "x1"] {
            assert_eq!(label(good), Ok(()), "{good}");
        }
        for bad in ["", "GPU", "gpu_a", "-gpu", "gpu-", "a.b", &"a".repeat(64)] {
            assert!(label(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(subdomain("s3.credentials"), Ok(()));
        assert!(subdomain("s3..credentials").is_err());
        assert!(label_starting_with_a_letter("1leman").is_err());
    }

    #[test]
    fn label_keys_values_and_env_names() {
        assert_eq!(label_key("app.kubernetes.io/name"), Ok(()));
        assert_eq!(label_key("team"), Ok(()));
        assert!(label_key("bad key").is_err());
        assert!(label_key("Bad_Prefix/x").is_err());
        assert_eq!(label_value(""), Ok(()));
        assert_eq!(label_value("A100_80GB"), Ok(()));
        assert!(label_value("-x").is_err());
        assert_eq!(env_name("RUST_LOG"), Ok(()));
        assert!(env_name("1X").is_err());
        assert!(env_name("A B").is_err());
    }
}
