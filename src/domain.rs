//! Parse-don't-validate types shared by the roles: exact money and the ranges
//! of ids and quantities the API accepts.

use std::{fmt, str::FromStr};

use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Largest id accepted: the largest integer a JSON client in JavaScript can
/// hold exactly.
pub const MAX_ID: i64 = 9_007_199_254_740_991;
/// Largest quantity in one order or stock level (fits MySQL INT).
pub const MAX_QTY: i64 = 1_000_000_000;

/// `v` as the one form every id column holds (a UUID, lower case,
/// hyphenated: ASCII, compared byte by byte), whichever form `uuid` accepts
/// it in (upper case, no hyphens, braces, `urn:uuid:`); `None` when it is
/// not a UUID.
pub fn canonical_uuid(v: &str) -> Option<String> {
    uuid::Uuid::parse_str(v)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// An amount of money: positive or zero, at most two decimals, fits
/// DECIMAL(12,2). Serialized as a JSON number written from its exact
/// decimal text, never through a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

#[derive(Debug, PartialEq, Eq)]
pub enum MoneyError {
    NotANumber,
    TooManyDecimals,
    Negative,
    TooLarge,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoneyError::NotANumber => "is not a number",
            MoneyError::TooManyDecimals => "has more than two decimals",
            MoneyError::Negative => "is negative",
            MoneyError::TooLarge => "is larger than 9999999999.99",
        })
    }
}

impl Money {
    pub fn new(value: Decimal) -> Result<Self, MoneyError> {
        let v = value.normalize();
        if v.scale() > 2 {
            return Err(MoneyError::TooManyDecimals);
        }
        if v.is_sign_negative() && !v.is_zero() {
            return Err(MoneyError::Negative);
        }
        if v > Decimal::new(999_999_999_999, 2) {
            return Err(MoneyError::TooLarge);
        }
        let mut v = v;
        v.rescale(2);
        Ok(Self(v))
    }

    /// A DECIMAL(12,2) column's value: valid by construction.
    pub fn from_db(value: Decimal) -> Self {
        let mut v = value;
        v.rescale(2);
        Self(v)
    }

    pub fn decimal(&self) -> Decimal {
        self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = Decimal::from_str_exact(s.trim())
            .or_else(|_| Decimal::from_scientific(s.trim()))
            .map_err(|_| MoneyError::NotANumber)?;
        Money::new(d)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The decimal's own text as a raw JSON number: 199.98 stays 199.98.
        let raw = serde_json::value::RawValue::from_string(self.0.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an amount such as 199.98 (at most two decimals)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
                Money::new(Decimal::from(v)).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
                Money::new(Decimal::from(v)).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
                // serde_json parsed the text to the nearest double; its
                // shortest round-trip form is the text the client sent for
                // every value that fits DECIMAL(12,2), so the decimal check
                // below sees what was written.
                if !v.is_finite() {
                    return Err(E::custom(MoneyError::NotANumber));
                }
                format!("{v}").parse::<Money>().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Money, E> {
                v.parse::<Money>().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Money, String> {
        serde_json::from_str::<Money>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn exact_round_trip() {
        for s in ["199.98", "0.01", "9999999999.99", "0.1", "100"] {
            let m = parse(s).unwrap();
            let back = serde_json::to_string(&m).unwrap();
            let expect = format!("{:.2}", s.parse::<Decimal>().unwrap());
            assert_eq!(back, expect);
        }
        assert_eq!(
            serde_json::to_string(&parse("199.98").unwrap()).unwrap(),
            "199.98"
        );
    }

    #[test]
    fn rejects_more_than_two_decimals() {
        assert!(parse("1.005").unwrap_err().contains("two decimals"));
        assert!(parse("0.001").unwrap_err().contains("two decimals"));
        // Trailing zeros are not extra precision.
        assert_eq!(parse("1.500").unwrap().to_string(), "1.50");
    }

    #[test]
    fn rejects_negative_and_huge() {
        assert!(parse("-1").unwrap_err().contains("negative"));
        assert!(parse("10000000000").unwrap_err().contains("larger"));
        assert!(parse("1e300").is_err());
    }

    #[test]
    fn accepts_strings_too() {
        assert_eq!(parse("\"12.30\"").unwrap().to_string(), "12.30");
        assert!(parse("\"abc\"").is_err());
        assert!(parse("true").is_err());
    }

    #[test]
    fn sums_are_exact() {
        let a = parse("0.1").unwrap().decimal();
        let b = parse("0.2").unwrap().decimal();
        assert_eq!((a + b).to_string(), "0.30");
    }
}
