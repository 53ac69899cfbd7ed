//! Tables of payments_db.

diesel::table! {
    payments (id) {
        id -> BigInt,
        order_id -> BigInt,
        saga_id -> Nullable<Varchar>,
        amount -> Numeric,
        status -> Varchar,
        tx_id -> Nullable<Varchar>,
        reason -> Nullable<Varchar>,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    processed_events (message_id) {
        message_id -> Varchar,
        processed_at -> Datetime,
    }
}
