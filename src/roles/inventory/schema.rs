//! Tables of inventory_db.

diesel::table! {
    inventories (product_id) {
        id -> BigInt,
        product_id -> BigInt,
        available_qty -> Integer,
        reserved_qty -> Integer,
        version -> BigInt,
        created_at -> Datetime,
        updated_at -> Datetime,
    }
}

diesel::table! {
    inventory_logs (id) {
        id -> BigInt,
        order_id -> BigInt,
        saga_id -> Varchar,
        product_id -> BigInt,
        action -> Varchar,
        quantity -> Integer,
        success -> Bool,
        reason -> Nullable<Varchar>,
        message_id -> Varchar,
        created_at -> Datetime,
    }
}
