//! `GET /admin/sagas` with `older_than` or `idle_for` against the real
//! database: the seek below the saga ids of the filter's time (and the
//! index hint with a status) must keep exactly the sagas the filters keep,
//! no fewer, on a table where most sagas are newer. The speed it buys (4.4 s
//! and over 10 s down to 10 ms on ten million sagas) is measured in
//! docs/benchmarks.md, not asserted here.

use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use diesel_async::SimpleAsyncConnection;
use dop::{
    role::Role,
    roles::order::admin::{load_page, ListFilter},
    saga::SagaStatus,
};

use crate::harness::ScratchDb;

/// A saga id drawn at `t`, as the order role draws them.
fn id_at(t: NaiveDateTime) -> String {
    let u = t.and_utc();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        u.timestamp() as u64,
        u.timestamp_subsec_nanos(),
    );
    uuid::Uuid::new_v7(ts).to_string()
}

#[tokio::test]
async fn old_or_idle_sagas_are_found_by_a_seek_past_the_newer_ones() {
    const NEWER: i64 = 20_000;
    let db = ScratchDb::new(Role::Order).await;
    let mut c = db.conn().await;
    let now = Utc::now().naive_utc();
    let fmt = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    // Three sagas two hours old, then 20,000 from the last ten minutes.
    let mut old = Vec::new();
    let mut values = Vec::new();
    for i in 0..3 {
        let t = now - chrono::Duration::hours(2) + chrono::Duration::milliseconds(i);
        let id = id_at(t);
        values.push(format!(
            "('{id}', {i}, 'COMPLETED', 'DONE', '{t}', '{t}')",
            t = fmt(t)
        ));
        old.push(id);
    }
    old.reverse();
    for i in 0..NEWER {
        let t = now - chrono::Duration::minutes(10) + chrono::Duration::milliseconds(i * 25);
        values.push(format!(
            "('{}', {}, 'COMPLETED', 'DONE', '{t}', '{t}')",
            id_at(t),
            1000 + i,
            t = fmt(t)
        ));
    }
    for chunk in values.chunks(2_000) {
        c.batch_execute(&format!(
            "INSERT INTO saga_states (saga_id, order_id, status, current_step, created_at, updated_at) VALUES {}",
            chunk.join(", ")
        ))
        .await
        .expect("insert sagas");
    }
    c.batch_execute("ANALYZE TABLE saga_states").await.unwrap();

    let hour = Duration::from_secs(3600);
    let filters = [
        ListFilter {
            older_than: Some(hour),
            ..ListFilter::default()
        },
        ListFilter {
            idle_for: Some(hour),
            ..ListFilter::default()
        },
        ListFilter {
            status: Some(SagaStatus::Completed),
            older_than: Some(hour),
            ..ListFilter::default()
        },
        ListFilter {
            status: Some(SagaStatus::Completed),
            idle_for: Some(hour),
            ..ListFilter::default()
        },
    ];
    for f in &filters {
        let page = load_page(&mut c, f, now, 100).await.expect("list");
        let ids: Vec<&str> = page.iter().map(|r| r.saga_id.as_str()).collect();
        assert_eq!(ids, old, "{f:?}: the three old sagas, newest first");
    }
    // Nothing is older than the oldest saga; every saga is older than 0 s.
    let none = ListFilter {
        older_than: Some(Duration::from_secs(3 * 3600)),
        ..ListFilter::default()
    };
    assert!(load_page(&mut c, &none, now, 100).await.unwrap().is_empty());
    let all = ListFilter {
        older_than: Some(Duration::ZERO),
        ..ListFilter::default()
    };
    let page = load_page(&mut c, &all, now, 1_000).await.unwrap();
    assert_eq!(page.len(), 1_000);
    db.drop().await;
}
