//! Known answers of the built-in UDFs' kernels.

use arrow_array::StringArray;
use leman::builtins::{embed, fnv1a64, parse_int, sha256_hex_of, str_lengths};

#[test]
fn str_len_counts_scalar_values() {
    let lengths = str_lengths(&StringArray::from(vec![Some("héllo"), None, Some("")]));
    assert_eq!(lengths.iter().collect::<Vec<_>>(), vec![Some(5), None, Some(0)]);
}

#[test]
fn sha256_is_lowercase_hex() {
    assert_eq!(sha256_hex_of(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn embed_is_normalised_and_deterministic() {
    let v = embed("Hello, hello world!");
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6);
    assert_eq!(v, embed("hello HELLO world"));
    assert_eq!(embed("  ,, "), [0.0; 64]);
    assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
}

#[test]
fn parse_int_takes_signs_and_spaces_and_names_what_it_refuses() {
    for (text, value) in [("42", 42), ("-7", -7), ("+7", 7), ("  12 ", 12), ("\t-0\n", 0), ("9223372036854775807", i64::MAX)] {
        assert_eq!(parse_int(text).map_err(|e| e.to_string()), Ok(value), "{text:?}");
    }
    for text in ["", "  ", "1.5", "0x10", "1_000", "12a", "- 3", "9223372036854775808"] {
        let error = parse_int(text).expect_err(text).to_string();
        assert!(error.contains(&format!("{text:?} is not a base-10 integer")), "{error}");
    }
}
