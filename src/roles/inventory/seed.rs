//! `inventory.seed`: products the role creates at start when they are
//! missing, as the original system did with 1001 and 1002 (its happy-path
//! script orders them without creating them).

use std::time::Duration;

use anyhow::Context;
use diesel::sql_types::{BigInt, Integer};
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::{backoff::Backoff, config::SeedProduct, context::Ctx};

/// Creates every product of `seed` that does not exist; an existing row,
/// whatever its stock, is left alone. Replicas starting at once are safe:
/// each insert is one statement that does nothing on the duplicate key, so
/// the second writer neither fails nor overwrites.
pub async fn run(ctx: &Ctx, seed: &[SeedProduct]) -> anyhow::Result<()> {
    if seed.is_empty() {
        return Ok(());
    }
    let mut conn = ctx
        .pool
        .get()
        .await
        .context("Failed to get a database connection to seed the inventory")?;
    let mut created = 0usize;
    for p in seed {
        // Validated when the configuration loaded (1..=MAX_ID, 0..=MAX_QTY).
        let qty = i32::try_from(p.available_qty).context("available_qty out of range")?;
        // `product_id = product_id` makes a duplicate a no-op without the
        // blanket error suppression of INSERT IGNORE; MySQL and MariaDB both
        // take it.
        let n = conn
            .transaction::<_, diesel::result::Error, _>(async |c| {
                diesel::sql_query(
                    "INSERT INTO inventories (product_id, available_qty, reserved_qty, version) \
                     VALUES (?, ?, 0, 1) ON DUPLICATE KEY UPDATE product_id = product_id",
                )
                .bind::<BigInt, _>(p.product_id)
                .bind::<Integer, _>(qty)
                .execute(c)
                .await
            })
            .await
            .with_context(|| format!("Failed to seed product {}", p.product_id))?;
        // 1 when inserted; 0 when it existed.
        if n == 1 {
            created += 1;
            tracing::info!(
                product_id = p.product_id,
                available_qty = p.available_qty,
                "seeded a missing product"
            );
        }
    }
    tracing::info!(created, listed = seed.len(), "inventory seed complete");
    Ok(())
}

/// Seeds once before the role serves; when the database cannot be reached
/// (a role may start during an outage), keeps trying in the background
/// with a growing delay, logging and counting each failure.
pub async fn at_start(ctx: crate::context::AppState) -> Option<tokio::task::JoinHandle<()>> {
    let seed = ctx.config.inventory.seed.clone();
    let first = tokio::time::timeout(Duration::from_secs(5), run(&ctx, &seed)).await;
    let err = match first {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => "no answer from the database within 5 s".to_string(),
    };
    tracing::warn!(error = %err, "inventory seed failed; retrying in the background");
    ctx.metrics.batch_failed("seed", "connection");
    Some(tokio::spawn(async move {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut attempt = 1u32;
        loop {
            tokio::time::sleep(backoff.delay(attempt)).await;
            attempt = attempt.saturating_add(1);
            match run(&ctx, &seed).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        attempt,
                        "inventory seed failed; retrying"
                    );
                    ctx.metrics.batch_failed("seed", "connection");
                }
            }
        }
    }))
}
