//! Tables of orders_db (written by hand: `diesel print-schema` needs
//! libmysqlclient).

diesel::table! {
    orders (id) {
        id -> BigInt,
        saga_id -> Varchar,
        user_id -> BigInt,
        product_id -> BigInt,
        quantity -> Integer,
        total_amount -> Numeric,
        status -> Varchar,
        idempotency_key -> Nullable<Varchar>,
        trace_id -> Varchar,
        created_at -> Datetime,
        updated_at -> Datetime,
        /// Generated (virtual): `user_id` when `idempotency_key` is set,
        /// else NULL; the unique index `(idempotency_user,
        /// idempotency_key)` holds keyless orders at its time-ordered end.
        /// Never written.
        idempotency_user -> Nullable<BigInt>,
    }
}

diesel::table! {
    saga_states (saga_id) {
        saga_id -> Varchar,
        order_id -> BigInt,
        status -> Varchar,
        current_step -> Varchar,
        failure_reason -> Nullable<Varchar>,
        last_event_id -> Nullable<Varchar>,
        retry_count -> Integer,
        failed_step -> Nullable<Varchar>,
        step_started_at -> Datetime,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    saga_events (id) {
        id -> BigInt,
        saga_id -> Varchar,
        event -> Varchar,
        from_status -> Nullable<Varchar>,
        from_step -> Nullable<Varchar>,
        to_status -> Varchar,
        to_step -> Varchar,
        message_id -> Nullable<Varchar>,
        reason -> Nullable<Varchar>,
        created_at -> Datetime,
    }
}

diesel::table! {
    processed_events (message_id) {
        message_id -> Varchar,
        processed_at -> Datetime,
    }
}

diesel::joinable!(saga_states -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(orders, saga_states);
