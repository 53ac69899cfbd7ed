//! Message bodies on the wire (docs/contract.md section 3). Field names are the
//! original system's, so its tools read ours.

use serde::{Deserialize, Serialize};

use super::topology::{
    RK_PAID, RK_PAY, RK_PAY_CANCEL, RK_PAY_CANCELLED, RK_RELEASE, RK_RELEASED, RK_RESERVE,
    RK_RESERVED,
};
use crate::domain::Money;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryCommand {
    pub saga_id: String,
    pub order_id: i64,
    pub product_id: i64,
    pub quantity: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentCommand {
    pub saga_id: String,
    pub order_id: i64,
    pub amount: Money,
    /// dop's addition on `payment.process`: past this instant the order role
    /// has given up on the payment (`saga.step_timeout`), so the payment
    /// role records the order as never to be charged instead of charging it
    /// (docs/design/barrier.md). Absent (the original's commands, or no
    /// deadline): no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryResult {
    pub saga_id: String,
    pub order_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentResult {
    pub saga_id: String,
    pub order_id: i64,
    /// dop's addition: the amount charged. The original sends none, so it
    /// is optional on the way in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    pub success: bool,
    /// The original's `transaction_id` (dop before 0.2 wrote `tx_id`; still
    /// read).
    #[serde(
        default,
        rename = "transaction_id",
        alias = "tx_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub tx_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to `payment.cancel` (dop's addition; the original has no
/// cancel). `cancelled` is false only when the order was charged before the
/// cancel arrived: that charge stands, and `transaction_id` is its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentCancelResult {
    pub saga_id: String,
    pub order_id: i64,
    pub cancelled: bool,
    #[serde(
        default,
        rename = "transaction_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub tx_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Any message dop sends, tagged by its routing key.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Reserve(InventoryCommand),
    Release(InventoryCommand),
    ProcessPayment(PaymentCommand),
    Reserved(InventoryResult),
    Released(InventoryResult),
    PaymentProcessed(PaymentResult),
    /// `payment.cancel`: the same body as `payment.process`.
    CancelPayment(PaymentCommand),
    PaymentCancelled(PaymentCancelResult),
}

/// Why a delivery can never be processed: it goes to the DLQ at once.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("unknown routing key {0:?}")]
    UnknownRoutingKey(String),
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("invalid field: {0}")]
    Invalid(String),
}

/// Checks that `v` is a UUID and rewrites it to the canonical form
/// (`domain::canonical_uuid`), whatever form the sender used.
fn uuid_field(name: &str, v: &mut String) -> Result<(), ContractError> {
    *v = crate::domain::canonical_uuid(v)
        .ok_or_else(|| ContractError::Invalid(format!("{name} {v:?} is not a UUID")))?;
    Ok(())
}

impl Message {
    pub fn routing_key(&self) -> &'static str {
        match self {
            Message::Reserve(_) => RK_RESERVE,
            Message::Release(_) => RK_RELEASE,
            Message::ProcessPayment(_) => RK_PAY,
            Message::Reserved(_) => RK_RESERVED,
            Message::Released(_) => RK_RELEASED,
            Message::PaymentProcessed(_) => RK_PAID,
            Message::CancelPayment(_) => RK_PAY_CANCEL,
            Message::PaymentCancelled(_) => RK_PAY_CANCELLED,
        }
    }

    pub fn saga_id(&self) -> &str {
        match self {
            Message::Reserve(c) | Message::Release(c) => &c.saga_id,
            Message::ProcessPayment(c) | Message::CancelPayment(c) => &c.saga_id,
            Message::Reserved(r) | Message::Released(r) => &r.saga_id,
            Message::PaymentProcessed(r) => &r.saga_id,
            Message::PaymentCancelled(r) => &r.saga_id,
        }
    }

    fn saga_id_mut(&mut self) -> &mut String {
        match self {
            Message::Reserve(c) | Message::Release(c) => &mut c.saga_id,
            Message::ProcessPayment(c) | Message::CancelPayment(c) => &mut c.saga_id,
            Message::Reserved(r) | Message::Released(r) => &mut r.saga_id,
            Message::PaymentProcessed(r) => &mut r.saga_id,
            Message::PaymentCancelled(r) => &mut r.saga_id,
        }
    }

    /// The original writes `"reason": ""` and `"transaction_id": ""` for
    /// "none" (Go's zero value): read them as absent.
    fn empty_strings_to_none(&mut self) {
        fn clear(v: &mut Option<String>) {
            if v.as_deref() == Some("") {
                *v = None;
            }
        }
        match self {
            Message::Reserved(r) | Message::Released(r) => clear(&mut r.reason),
            Message::PaymentProcessed(r) => {
                clear(&mut r.reason);
                clear(&mut r.tx_id);
            }
            Message::PaymentCancelled(r) => {
                clear(&mut r.reason);
                clear(&mut r.tx_id);
            }
            _ => {}
        }
    }

    pub fn order_id(&self) -> i64 {
        match self {
            Message::Reserve(c) | Message::Release(c) => c.order_id,
            Message::ProcessPayment(c) | Message::CancelPayment(c) => c.order_id,
            Message::Reserved(r) | Message::Released(r) => r.order_id,
            Message::PaymentProcessed(r) => r.order_id,
            Message::PaymentCancelled(r) => r.order_id,
        }
    }

    pub fn to_json(&self) -> String {
        let r = match self {
            Message::Reserve(c) | Message::Release(c) => serde_json::to_string(c),
            Message::ProcessPayment(c) | Message::CancelPayment(c) => serde_json::to_string(c),
            Message::Reserved(r) | Message::Released(r) => serde_json::to_string(r),
            Message::PaymentProcessed(r) => serde_json::to_string(r),
            Message::PaymentCancelled(r) => serde_json::to_string(r),
        };
        // Serializing these plain structs cannot fail.
        r.unwrap_or_default()
    }

    /// Parses and validates a delivery's body by its routing key.
    pub fn parse(routing_key: &str, body: &[u8]) -> Result<Message, ContractError> {
        fn de<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ContractError> {
            serde_json::from_slice(body).map_err(|e| ContractError::Malformed(e.to_string()))
        }
        let mut msg = match routing_key {
            RK_RESERVE => Message::Reserve(de(body)?),
            RK_RELEASE => Message::Release(de(body)?),
            RK_PAY => Message::ProcessPayment(de(body)?),
            RK_RESERVED => Message::Reserved(de(body)?),
            RK_RELEASED => Message::Released(de(body)?),
            RK_PAID => Message::PaymentProcessed(de(body)?),
            RK_PAY_CANCEL => Message::CancelPayment(de(body)?),
            RK_PAY_CANCELLED => Message::PaymentCancelled(de(body)?),
            other => return Err(ContractError::UnknownRoutingKey(other.to_string())),
        };
        uuid_field("saga_id", msg.saga_id_mut())?;
        msg.empty_strings_to_none();
        let order_id = msg.order_id();
        if !(1..=crate::domain::MAX_ID).contains(&order_id) {
            return Err(ContractError::Invalid(format!(
                "order_id {order_id} is not between 1 and {}",
                crate::domain::MAX_ID
            )));
        }
        match &msg {
            Message::Reserve(c) | Message::Release(c) if c.quantity < 1 || c.product_id < 1 => {
                return Err(ContractError::Invalid(
                    "quantity and product_id must be positive".into(),
                ));
            }
            Message::ProcessPayment(c) | Message::CancelPayment(c) if c.amount.is_zero() => {
                return Err(ContractError::Invalid("amount must be positive".into()));
            }
            _ => {}
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAGA: &str = "0190a0c4-7c1e-7000-8000-000000000001";
    const ORDER: i64 = 2;

    #[test]
    fn round_trips_every_message() {
        let msgs = [
            Message::Reserve(InventoryCommand {
                saga_id: SAGA.into(),
                order_id: ORDER,
                product_id: 1001,
                quantity: 2,
            }),
            Message::PaymentProcessed(PaymentResult {
                saga_id: SAGA.into(),
                order_id: ORDER,
                amount: Some("199.98".parse().unwrap()),
                success: true,
                tx_id: Some("t".into()),
                reason: None,
            }),
            Message::CancelPayment(PaymentCommand {
                saga_id: SAGA.into(),
                order_id: ORDER,
                amount: "5.00".parse().unwrap(),
                expires_at: None,
            }),
            Message::ProcessPayment(PaymentCommand {
                saga_id: SAGA.into(),
                order_id: ORDER,
                amount: "5.00".parse().unwrap(),
                expires_at: Some("2026-11-30T12:00:01.5Z".parse().unwrap()),
            }),
            Message::PaymentCancelled(PaymentCancelResult {
                saga_id: SAGA.into(),
                order_id: ORDER,
                cancelled: false,
                tx_id: Some("t".into()),
                reason: Some("charged before the cancel arrived".into()),
            }),
        ];
        for m in msgs {
            let json = m.to_json();
            assert_eq!(Message::parse(m.routing_key(), json.as_bytes()).unwrap(), m);
        }
        let pay = Message::ProcessPayment(PaymentCommand {
            saga_id: SAGA.into(),
            order_id: ORDER,
            amount: "199.98".parse().unwrap(),
            expires_at: None,
        });
        assert!(
            pay.to_json().contains("\"amount\":199.98"),
            "{}",
            pay.to_json()
        );
    }

    #[test]
    fn ids_are_stored_in_one_form() {
        // The id columns compare bytes, so an id in another accepted form
        // (upper case, no hyphens, braces) must still find its saga.
        let body = format!(
            r#"{{"saga_id":"{}","order_id":{ORDER},"product_id":1,"quantity":1,"success":true}}"#,
            SAGA.to_uppercase().replace('-', ""),
        );
        let msg = Message::parse("inventory.reserved", body.as_bytes()).unwrap();
        assert_eq!(msg.saga_id(), SAGA);
        assert_eq!(msg.order_id(), ORDER);
    }

    #[test]
    fn rejects_poison() {
        assert!(matches!(
            Message::parse("inventory.reserve", b"{not json"),
            Err(ContractError::Malformed(_))
        ));
        assert!(matches!(
            Message::parse("inventory.reserve", b"{}"),
            Err(ContractError::Malformed(_))
        ));
        assert!(matches!(
            Message::parse("bogus", b"{}"),
            Err(ContractError::UnknownRoutingKey(_))
        ));
        let bad_id = format!(r#"{{"saga_id":"x","order_id":{ORDER},"product_id":1,"quantity":1}}"#);
        assert!(matches!(
            Message::parse("inventory.reserve", bad_id.as_bytes()),
            Err(ContractError::Invalid(_))
        ));
        // Not a UUID, though ASCII-lookalike digits in another script.
        let foreign = r#"{"saga_id":"٠١٩٠a0c4-7c1e-7000-8000-000000000001","order_id":1,"product_id":1,"quantity":1}"#;
        assert!(matches!(
            Message::parse("inventory.reserve", foreign.as_bytes()),
            Err(ContractError::Invalid(_))
        ));
        let zero =
            format!(r#"{{"saga_id":"{SAGA}","order_id":{ORDER},"product_id":1,"quantity":0}}"#);
        assert!(matches!(
            Message::parse("inventory.reserve", zero.as_bytes()),
            Err(ContractError::Invalid(_))
        ));
    }

    #[test]
    fn order_ids_are_javascript_safe_integers() {
        let body = |id: &str| {
            format!(r#"{{"saga_id":"{SAGA}","order_id":{id},"product_id":1,"quantity":1}}"#)
        };
        let ok = Message::parse("inventory.reserve", body("9007199254740991").as_bytes()).unwrap();
        assert_eq!(ok.order_id(), 9_007_199_254_740_991);
        // A string (the old UUID form, or digits in quotes) is not an id.
        for id in [
            "\"0190a0c4-7c1e-7000-8000-000000000002\"",
            "\"5\"",
            "5.5",
            "null",
        ] {
            assert!(
                matches!(
                    Message::parse("inventory.reserve", body(id).as_bytes()),
                    Err(ContractError::Malformed(_))
                ),
                "{id}"
            );
        }
        for id in ["0", "-1", "9007199254740992", "9223372036854775807"] {
            assert!(
                matches!(
                    Message::parse("inventory.reserve", body(id).as_bytes()),
                    Err(ContractError::Invalid(_))
                ),
                "{id}"
            );
        }
        // Beyond i64: not a number serde can hold.
        assert!(
            Message::parse("inventory.reserve", body("99999999999999999999").as_bytes()).is_err()
        );
    }
}
