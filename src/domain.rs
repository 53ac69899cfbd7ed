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
    /// Reads the amount from the JSON text itself, never through a float:
    /// a double cannot tell `0.0100000000000000001` from `0.01`, so the
    /// "at most two decimals" rule would pass an amount the client did not
    /// mean. A number (`199.98`, `100`, `1e2`) or a string holding one
    /// (`"199.98"`) is accepted when its exact value has at most two
    /// decimals (docs/design/exact-input.md).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get().trim();
        let number = if text.starts_with('"') {
            serde_json::from_str::<String>(text).map_err(de::Error::custom)?
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            text.to_string()
        } else {
            return Err(de::Error::custom(
                "expected an amount such as 199.98 (at most two decimals)",
            ));
        };
        number.parse::<Money>().map_err(de::Error::custom)
    }
}

/// Serializes a DATETIME as the API writes timestamps: UTC, RFC 3339 with
/// milliseconds (docs/contract.md section 4). The columns hold UTC:
/// diesel-async sets the session time zone.
pub fn utc<S: Serializer>(t: &chrono::NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(
        &t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
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
    fn never_rounded_through_a_float() {
        // Each is 0.01 or 1.00 as a double, but not as written.
        for s in [
            "0.0100000000000000001",
            "1.0000000000000000001",
            "\"0.0100000000000000001\"",
            "0.009999999999999999999",
        ] {
            assert!(parse(s).unwrap_err().contains("two decimals"), "{s}");
        }
        // Exponents are read exactly too.
        assert_eq!(parse("1e2").unwrap().to_string(), "100.00");
        assert_eq!(parse("1.5E1").unwrap().to_string(), "15.00");
        assert_eq!(parse("1999.8e-1").unwrap().to_string(), "199.98");
        assert!(parse("1e-3").unwrap_err().contains("two decimals"));
        assert!(parse("12345678901234567890123456789012345").is_err());
        assert!(parse("null").is_err());
        assert!(parse("[1]").is_err());
        // Inside a body, a serde_json::Value, and a struct.
        #[derive(Deserialize)]
        struct Body {
            #[allow(dead_code)]
            id: i64,
            amount: Money,
        }
        let b: Body = serde_json::from_str(r#"{"id": 7, "amount": 199.98}"#).unwrap();
        assert_eq!(b.amount.to_string(), "199.98");
        let v = serde_json::json!({"id": 7, "amount": 2.5});
        let b: Body = serde_json::from_value(v).unwrap();
        assert_eq!(b.amount.to_string(), "2.50");
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
