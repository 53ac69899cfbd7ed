//! Id columns are ASCII with a binary collation (migrations *_ascii_ids):
//! every one of them is, in all three roles' schemas, and the outbox
//! deleter still finds each confirmed row through the primary key.

use diesel::{sql_types::Text, QueryableByName};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};
use dop::roles::Role;

use crate::harness::{drop_db, MYSQL};

#[derive(QueryableByName, Debug)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    collation_name: String,
}

#[derive(QueryableByName, Debug)]
struct PlanRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    table: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    r#type: Option<String>,
}

async fn fresh(role: Role) -> (String, String) {
    let name = format!(
        "dop_t_{}_ids_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10],
        role.as_str()
    );
    let url = format!("{MYSQL}/{name}");
    dop::db::migrate::migrate(role, &url)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot migrate at {MYSQL} ({e:#}); start MariaDB (scripts/ensure-services.sh)")
        });
    (name, url)
}

#[tokio::test]
async fn every_id_column_is_ascii_bin() {
    for role in [Role::Order, Role::Inventory, Role::Payment] {
        let (name, url) = fresh(role).await;
        let mut c = AsyncMysqlConnection::establish(&url).await.unwrap();
        let cols: Vec<Column> = diesel::sql_query(
            "SELECT CAST(table_name AS CHAR) AS table_name, \
                    CAST(column_name AS CHAR) AS column_name, \
                    CAST(collation_name AS CHAR) AS collation_name \
             FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND data_type = 'char' \
             ORDER BY table_name, column_name",
        )
        .load(&mut c)
        .await
        .unwrap();
        drop_db(&name).await;
        // Every CHAR column is a UUID: ids of orders, sagas, messages, payments.
        assert!(cols.len() >= 4, "{role:?}: {cols:?}");
        for col in &cols {
            assert_eq!(
                col.collation_name, "ascii_bin",
                "{role:?} {}.{}",
                col.table_name, col.column_name
            );
        }
    }
}

#[tokio::test]
async fn outbox_deleter_looks_up_each_id_by_primary_key() {
    let (name, url) = fresh(Role::Order).await;
    let mut c = AsyncMysqlConnection::establish(&url).await.unwrap();
    let ids: Vec<String> = (0..4).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for id in &ids {
        c.batch_execute(&format!(
            "INSERT INTO outbox (message_id, exchange, routing_key, payload, trace_id, saga_id) \
             VALUES ('{id}', 'saga.commands', 'inventory.reserve', '{{}}', 't', '{id}')"
        ))
        .await
        .unwrap();
    }
    c.batch_execute("ANALYZE TABLE outbox").await.unwrap();

    // The plan: the ids first, then one primary-key lookup each, never a
    // scan (a scan locks every row, including other writers' new ones).
    let mut explain =
        diesel::sql_query(format!("EXPLAIN {}", dop::messaging::outbox::delete_sql(2)))
            .into_boxed();
    for id in &ids[..2] {
        explain = explain.bind::<Text, _>(id.clone());
    }
    let plan: Vec<PlanRow> = explain.load(&mut c).await.unwrap();
    let outbox = plan
        .iter()
        .find(|r| r.table.as_deref() == Some("outbox"))
        .unwrap_or_else(|| panic!("no outbox row in the plan: {plan:?}"));
    assert_eq!(outbox.r#type.as_deref(), Some("eq_ref"), "{plan:?}");

    let gone: Vec<&str> = ids[..2].iter().map(String::as_str).collect();
    dop::messaging::outbox::delete_ids(&mut c, &gone)
        .await
        .unwrap();
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        message_id: String,
    }
    let left: Vec<Id> = diesel::sql_query("SELECT message_id FROM outbox ORDER BY message_id")
        .load(&mut c)
        .await
        .unwrap();
    drop_db(&name).await;
    let left: Vec<String> = left.into_iter().map(|r| r.message_id).collect();
    assert_eq!(left, ids[2..].to_vec());
}
