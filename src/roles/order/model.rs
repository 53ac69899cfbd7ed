//! Rows of orders_db and their JSON views.

use crate::domain::utc;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;

use super::schema::{orders, saga_events, saga_states};
use crate::domain::Money;

#[derive(Clone, Debug, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = orders)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
pub struct OrderRow {
    pub id: i64,
    pub saga_id: String,
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub total_amount: Decimal,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub trace_id: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = saga_states)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
pub struct SagaRow {
    pub saga_id: String,
    pub order_id: i64,
    pub status: String,
    pub current_step: String,
    pub failure_reason: Option<String>,
    /// Message id of the last event that moved the saga.
    pub last_event_id: Option<String>,
    /// How many times its pending command was sent again (recovery or an
    /// operator).
    pub retry_count: i32,
    /// The step a FAILED saga failed at (its current_step is DONE).
    pub failed_step: Option<String>,
    /// When its current step began (step deadlines).
    pub step_started_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq, Insertable)]
#[diesel(table_name = saga_events)]
pub struct NewSagaEvent {
    pub saga_id: String,
    pub event: String,
    pub from_status: Option<String>,
    pub from_step: Option<String>,
    pub to_status: String,
    pub to_step: String,
    pub message_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Queryable, Selectable, Serialize)]
#[diesel(table_name = saga_events)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
pub struct SagaEventRow {
    pub id: i64,
    #[serde(skip)]
    pub saga_id: String,
    pub event: String,
    pub from_status: Option<String>,
    pub from_step: Option<String>,
    pub to_status: String,
    pub to_step: String,
    pub message_id: Option<String>,
    pub reason: Option<String>,
    #[serde(serialize_with = "utc")]
    pub created_at: NaiveDateTime,
}

#[derive(Serialize)]
pub struct OrderView {
    pub id: i64,
    pub order_id: i64,
    pub saga_id: String,
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub total_amount: Money,
    pub status: String,
    #[serde(serialize_with = "utc")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "utc")]
    pub updated_at: NaiveDateTime,
}

impl From<&OrderRow> for OrderView {
    fn from(o: &OrderRow) -> Self {
        Self {
            id: o.id,
            order_id: o.id,
            saga_id: o.saga_id.clone(),
            user_id: o.user_id,
            product_id: o.product_id,
            quantity: o.quantity,
            total_amount: Money::from_db(o.total_amount),
            status: o.status.clone(),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct SagaView {
    pub saga_id: String,
    pub order_id: i64,
    pub status: String,
    pub current_step: String,
    /// The original's fields: the message id of the last event that moved
    /// the saga, how many times its command was sent again, and the reason
    /// of its failure (the same text as `failure_reason`).
    pub last_event_id: Option<String>,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub failure_reason: Option<String>,
    /// The step a FAILED saga failed at (dop's addition).
    pub failed_step: Option<String>,
    #[serde(serialize_with = "utc")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "utc")]
    pub updated_at: NaiveDateTime,
    pub age_seconds: i64,
    /// Seconds since the saga last moved.
    pub idle_seconds: i64,
    /// In flight and not moved for `recovery.stuck_after` (set by the admin
    /// views, which know the configuration).
    pub stuck: bool,
}

impl From<&SagaRow> for SagaView {
    fn from(s: &SagaRow) -> Self {
        Self {
            saga_id: s.saga_id.clone(),
            order_id: s.order_id,
            status: s.status.clone(),
            current_step: s.current_step.clone(),
            last_event_id: s.last_event_id.clone(),
            retry_count: s.retry_count,
            last_error: s.failure_reason.clone(),
            failure_reason: s.failure_reason.clone(),
            failed_step: s.failed_step.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            age_seconds: (chrono::Utc::now().naive_utc() - s.created_at).num_seconds(),
            idle_seconds: (chrono::Utc::now().naive_utc() - s.updated_at).num_seconds(),
            stuck: false,
        }
    }
}
