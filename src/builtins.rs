//! Built-in UDFs of the CLI, exact so that anyone can check them.
//!
//! - `str_len`: utf8 -> int32, the number of Unicode scalar values (as
//!   Arrow's `utf8_length`); null in, null out.
//! - `sha256`: utf8 or binary -> utf8, the lowercase hex SHA-256 of the bytes.
//! - `hash_embed`: utf8 -> fixed_size_list<float32, 64>, feature hashing:
//!   the text is lowercased and split into tokens on every character that is
//!   not alphanumeric; each token's UTF-8 bytes are hashed with 64-bit FNV-1a
//!   (offset basis 0xcbf29ce484222325, prime 0x100000001b3); the token adds
//!   +1 to dimension `hash % 64` if bit 63 of the hash is 0 and -1 if it is 1;
//!   the vector is then divided by its L2 norm (a zero vector stays zero).
//! - `busy`: int64 -> int64, returns its input after spinning the CPU for
//!   `micros` microseconds per row (argument `micros`, default 50).
//! - `wait`: int64 -> int64, returns its input after sleeping `micros`
//!   microseconds per row (default 50), keeping no CPU busy: a stand-in for
//!   a UDF that waits on a remote model or an accelerator.
//! - `parse_int`: utf8 -> int64, a base-10 integer with an optional sign and
//!   surrounding spaces; anything else is an error naming the value (so
//!   error policies can be tried from the command line); null in, null out.
//! - `text_stats`: utf8 -> struct<n_chars int32, n_words int32, n_lines
//!   int32>, declared unpacked into three columns (`add-column --unpack`):
//!   Unicode scalar values, words split on Unicode whitespace, lines split
//!   on `\n` (an empty string has 0 words and 1 line); null in, null out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields};
use leman_engine::{Error, Result, Udf, UdfError, UdfRegistry};
use sha2::{Digest, Sha256};

/// Dimensions of `hash_embed`.
pub const EMBED_DIM: i32 = 64;

/// Names of the built-in UDFs.
pub const NAMES: [&str; 7] = ["str_len", "sha256", "hash_embed", "busy", "wait", "parse_int", "text_stats"];

/// The built-in UDF `name` reading `inputs`, with `args` (`key=value`).
pub fn get(name: &str, inputs: &[&str], args: &[(String, String)]) -> Result<Udf, UdfError> {
    let udf = match name {
        "str_len" => Udf::array("str_len", Field::new("str_len", DataType::Int32, true), inputs, str_len),
        "sha256" => Udf::array("sha256", Field::new("sha256", DataType::Utf8, true), inputs, sha256_hex),
        "hash_embed" => Udf::array("hash_embed", Field::new("hash_embed", embed_type(), true), inputs, hash_embed),
        "parse_int" => Udf::array("parse_int", Field::new("parse_int", DataType::Int64, true), inputs, parse_ints),
        "text_stats" => Udf::array("text_stats", Field::new("text_stats", text_stats_type(), true), inputs, text_stats),
        "busy" => {
            let spin = per_row(name, args)?;
            Udf::array("busy", Field::new("busy", DataType::Int64, true), inputs, move |cols| busy(cols, spin))
        }
        "wait" => {
            let sleep = per_row(name, args)?;
            Udf::array("wait", Field::new("wait", DataType::Int64, true), inputs, move |cols| wait(cols, sleep))
        }
        other => {
            return Err(UdfError::new(format!("unknown built-in UDF {other}; choose one of {}", NAMES.join(", "))));
        }
    };
    Ok(udf.with_version("1").with_params(args.to_vec()))
}

/// Checks that built-in `udf` can read `input`, a column of `data_type`.
pub fn check_input(udf: &str, input: &str, data_type: &DataType) -> Result<()> {
    let (ok, expected) = match udf {
        "str_len" | "hash_embed" | "parse_int" | "text_stats" => (data_type == &DataType::Utf8, "utf8"),
        "sha256" => (matches!(data_type, DataType::Utf8 | DataType::Binary | DataType::LargeBinary), "utf8 or binary"),
        "busy" | "wait" => (data_type == &DataType::Int64, "int64"),
        _ => (true, ""),
    };
    if ok {
        return Ok(());
    }
    Err(Error::InputTypeMismatch {
        udf: udf.to_string(),
        input: input.to_string(),
        expected: expected.to_string(),
        actual: data_type.to_string(),
    })
}

/// Registers every built-in as a factory of its parameters (a column's
/// record supplies its inputs and parameters).
pub fn register_all(registry: &UdfRegistry) {
    for name in NAMES {
        registry.register_factory(name, move |params| get(name, &[], params));
    }
}

/// A registry holding every built-in, as the `leman` binary's processes
/// (client, head and workers) use it.
pub fn registry() -> UdfRegistry {
    let registry = UdfRegistry::new();
    register_all(&registry);
    registry
}

/// `fixed_size_list<float32, 64>`.
pub fn embed_type() -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), EMBED_DIM)
}

fn one_input<'a>(cols: &'a [ArrayRef], udf: &str) -> Result<&'a ArrayRef, UdfError> {
    match cols {
        [one] => Ok(one),
        _ => Err(UdfError::new(format!("{udf} takes one input column, got {}", cols.len()))),
    }
}

fn strings<'a>(array: &'a ArrayRef, udf: &str) -> Result<&'a StringArray, UdfError> {
    array
        .as_string_opt::<i32>()
        .ok_or_else(|| UdfError::new(format!("{udf} takes a utf8 column, got {}", array.data_type())))
}

fn str_len(cols: &[ArrayRef]) -> Result<ArrayRef, UdfError> {
    let lengths = str_lengths(strings(one_input(cols, "str_len")?, "str_len")?);
    Ok(Arc::new(lengths))
}

/// `str_len`'s kernel: Unicode scalar values per string, null for null.
pub fn str_lengths(text: &StringArray) -> Int32Array {
    text.iter().map(|s| s.map(|s| s.chars().count() as i32)).collect()
}

/// The fields of `text_stats`'s struct, each the name of a column it fills.
pub const TEXT_STATS_FIELDS: [&str; 3] = ["n_chars", "n_words", "n_lines"];

/// `struct<n_chars int32, n_words int32, n_lines int32>`.
pub fn text_stats_type() -> DataType {
    DataType::Struct(Fields::from(TEXT_STATS_FIELDS.map(|name| Field::new(name, DataType::Int32, true)).to_vec()))
}

/// `text_stats`'s kernel: characters, words and lines of one text.
pub fn text_stats_of(text: &str) -> [i32; 3] {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    [count(text.chars().count()), count(text.split_whitespace().count()), count(text.split('\n').count())]
}

/// `text_stats` on a utf8 column: a struct of [`TEXT_STATS_FIELDS`].
pub fn text_stats(cols: &[ArrayRef]) -> Result<ArrayRef, UdfError> {
    let text = strings(one_input(cols, "text_stats")?, "text_stats")?;
    let stats: Vec<Option<[i32; 3]>> = text.iter().map(|s| s.map(text_stats_of)).collect();
    let DataType::Struct(fields) = text_stats_type() else { return Err(UdfError::new("text_stats: internal type")) };
    let children: Vec<ArrayRef> = (0..3)
        .map(|i| Arc::new(stats.iter().map(|s| s.map(|s| s[i])).collect::<Int32Array>()) as ArrayRef)
        .collect();
    let structs = StructArray::try_new(fields, children, text.nulls().cloned())
        .map_err(|e| UdfError::new(format!("text_stats: {e}")))?;
    Ok(Arc::new(structs))
}

fn sha256_hex(cols: &[ArrayRef]) -> Result<ArrayRef, UdfError> {
    let input = one_input(cols, "sha256")?;
    let out: StringArray = match input.data_type() {
        DataType::Utf8 => strings(input, "sha256")?.iter().map(|s| s.map(|s| sha256_hex_of(s.as_bytes()))).collect(),
        DataType::Binary => input.as_binary::<i32>().iter().map(|b| b.map(sha256_hex_of)).collect(),
        DataType::LargeBinary => input.as_binary::<i64>().iter().map(|b| b.map(sha256_hex_of)).collect(),
        other => return Err(UdfError::new(format!("sha256 takes a utf8 or binary column, got {other}"))),
    };
    Ok(Arc::new(out))
}

/// `sha256`'s kernel: the lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The `hash_embed` vector of one text, as documented in the module docs.
pub fn embed(text: &str) -> [f32; EMBED_DIM as usize] {
    let mut vector = [0f32; EMBED_DIM as usize];
    let lower = text.to_lowercase();
    for token in lower.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
        let hash = fnv1a64(token.as_bytes());
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[(hash % EMBED_DIM as u64) as usize] += sign;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

fn parse_ints(cols: &[ArrayRef]) -> Result<ArrayRef, UdfError> {
    let text = strings(one_input(cols, "parse_int")?, "parse_int")?;
    let values: Result<Int64Array, UdfError> = text.iter().map(|s| s.map(parse_int).transpose()).collect();
    Ok(Arc::new(values?))
}

/// `parse_int`'s kernel: a base-10 integer with an optional sign, spaces
/// around it allowed.
pub fn parse_int(text: &str) -> Result<i64, UdfError> {
    text.trim().parse::<i64>().map_err(|error| UdfError::new(format!("parse_int: {text:?} is not a base-10 integer ({error})")))
}

/// 64-bit FNV-1a of `bytes`, the token hash of `hash_embed`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn hash_embed(cols: &[ArrayRef]) -> Result<ArrayRef, UdfError> {
    let text = strings(one_input(cols, "hash_embed")?, "hash_embed")?;
    let mut builder = FixedSizeListBuilder::with_capacity(Float32Builder::with_capacity(text.len() * 64), EMBED_DIM, text.len())
        .with_field(Arc::new(Field::new("item", DataType::Float32, true)));
    for value in text.iter() {
        match value {
            Some(value) => {
                builder.values().append_slice(&embed(value));
                builder.append(true);
            }
            None => {
                builder.values().append_nulls(EMBED_DIM as usize);
                builder.append(false);
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// The `micros=N` argument of `busy` and `wait` (default 50), as a duration.
fn per_row(udf: &str, args: &[(String, String)]) -> Result<Duration, UdfError> {
    let micros = match args.iter().find(|(k, _)| k == "micros") {
        Some((_, v)) => v.parse::<u64>().map_err(|_| UdfError::new(format!("{udf}: micros={v} is not a whole number")))?,
        None => 50,
    };
    Ok(Duration::from_micros(micros))
}

fn wait(cols: &[ArrayRef], per_row: Duration) -> Result<ArrayRef, UdfError> {
    let input = one_input(cols, "wait")?;
    let values = input
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| UdfError::new(format!("wait takes an int64 column, got {}", input.data_type())))?;
    std::thread::sleep(per_row.saturating_mul(u32::try_from(values.len()).unwrap_or(u32::MAX)));
    Ok(Arc::new(values.clone()))
}

fn busy(cols: &[ArrayRef], spin: Duration) -> Result<ArrayRef, UdfError> {
    let input = one_input(cols, "busy")?;
    let values = input
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| UdfError::new(format!("busy takes an int64 column, got {}", input.data_type())))?;
    for _ in 0..values.len() {
        let start = Instant::now();
        while start.elapsed() < spin {
            std::hint::spin_loop();
        }
    }
    Ok(Arc::new(values.clone()))
}
