//! Kubernetes resource quantities (`500m`, `2`, `8Gi`, `1e3`): checked
//! here, written into manifests as given, and turned into the numbers a
//! worker is started with (`--cpus 0.5`, `--memory 8589934592`).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A quantity as the user wrote it, with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl Quantity {
    /// Parses `text` by the Kubernetes grammar: a non-negative decimal
    /// number and an optional suffix (`n u m k M G T P E`, `Ki Mi Gi Ti Pi
    /// Ei`, or an exponent `e3`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("bad quantity {text:?}: expected a number with an optional suffix, such as 500m, 2, 8Gi or 1e3");
        let digits_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (number, suffix) = text.split_at(digits_end);
        let number = number.strip_prefix('+').unwrap_or(number);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let number: f64 = number.parse().map_err(|_| bad())?;
        let scale = match suffix {
            "" => 1.0,
            "n" => 1e-9,
            "u" => 1e-6,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024f64,
            "Mi" => 1024f64.powi(2),
            "Gi" => 1024f64.powi(3),
            "Ti" => 1024f64.powi(4),
            "Pi" => 1024f64.powi(5),
            "Ei" => 1024f64.powi(6),
            exponent => {
                let digits = exponent.strip_prefix(['e', 'E']).ok_or_else(bad)?;
                let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                10f64.powi(digits.parse::<i32>().map_err(|_| bad())?)
            }
        };
        let value = number * scale;
        if !value.is_finite() {
            return Err(bad());
        }
        Ok(Self { text: text.to_string(), value })
    }

    /// A quantity known to be valid: `text` is worth `value`.
    pub(crate) fn exact(text: &str, value: f64) -> Self {
        Self { text: text.to_string(), value }
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its value (cores for CPUs, bytes for memory).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Its value in whole bytes, rounded up.
    pub fn bytes(&self) -> u64 {
        self.value.ceil() as u64
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A quantity from TOML: a string such as `"8Gi"`, or a plain number.
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 2, 8Gi, or a number")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Quantity, E> {
                Quantity::parse(text).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Quantity, E> {
                Quantity::parse(&number.to_string()).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Quantity, E> {
                Quantity::parse(&number.to_string()).map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, number: f64) -> Result<Quantity, E> {
                Quantity::parse(&number.to_string()).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> f64 {
        Quantity::parse(text).map(|q| q.value()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn kubernetes_suffixes() {
        assert_eq!(value("500m"), 0.5);
        assert_eq!(value("2"), 2.0);
        assert_eq!(value("1.5"), 1.5);
        assert_eq!(value("8Gi"), 8.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(value("512Mi"), 512.0 * 1024.0 * 1024.0);
        assert_eq!(value("4G"), 4e9);
        assert_eq!(value("1e3"), 1000.0);
        assert_eq!(value("100k"), 1e5);
        assert_eq!(Quantity::parse("1.5Gi").map(|q| q.bytes()), Ok(1_610_612_736));
    }

    #[test]
    fn bad_quantities_are_refused_with_the_text() {
        for bad in ["8Gx", "", "Gi", "-1", "1.2.3", "1e", "1ex", "two", " 1", "1 Gi", "."] {
            let error = Quantity::parse(bad).err().unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(error.starts_with(&format!("bad quantity {bad:?}")), "{error}");
        }
    }
}
