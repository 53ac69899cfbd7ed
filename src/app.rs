//! How a role is started and shut down: composes the context
//! (`context::Ctx`), the role's consumers and routes, and the HTTP server.
//! Nothing imports this module but the CLI.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::Router;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    config::Config,
    context::{AppState, Ctx},
    db, http,
    messaging::{Broker, Outbox},
    observability::Metrics,
    roles::{self, Role},
};

/// A role that is serving.
pub struct RunningRole {
    pub role: Role,
    pub addr: SocketAddr,
    pub ctx: AppState,
    server: JoinHandle<()>,
    stop_http: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningRole {
    /// Starts a role: migrations (unless off), pool, broker, outbox relay,
    /// consumers, background loops, and the HTTP server on `listener`.
    pub async fn start(
        role: Role,
        config: Arc<Config>,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let db_cfg = config.db(role);
        if config.migrate_on_start {
            let n = db::migrate::migrate_with_ca(
                role,
                db_cfg.database_url.expose(),
                db_cfg.ca_file.as_deref(),
            )
            .await
            .with_context(|| format!("Failed to migrate the {role} database"))?;
            if n > 0 {
                tracing::info!(role = %role, applied = n, "migrations applied");
            }
        }
        let pool = db::connect_pool(&db_cfg)?;
        let metrics = Arc::new(Metrics::new(role.service()));
        let broker = Broker::new(&config, metrics.clone())?;
        let outbox = Outbox::start(
            pool.clone(),
            broker.clone(),
            metrics.clone(),
            config.outbox.clone(),
        );
        let ctx = Arc::new(Ctx {
            role,
            config: config.clone(),
            pool,
            broker: broker.clone(),
            outbox,
            metrics,
        });
        let mut tasks = Vec::new();
        let app: Router = match role {
            Role::Order => {
                let writer = roles::order::register(&ctx, &mut tasks);
                roles::order::router(ctx.clone(), writer)
            }
            Role::Inventory => {
                if let Some(retry) = roles::inventory::seed::at_start(ctx.clone()).await {
                    tasks.push(retry);
                }
                roles::inventory::register(&ctx);
                roles::inventory::router(ctx.clone())
            }
            Role::Payment => {
                roles::payment::register(&ctx);
                roles::payment::router(ctx.clone())
            }
        };
        let app = http::health::with_common(app, ctx.clone());
        tasks.push(broker.start());
        tasks.push(tokio::spawn(pool_sampler(ctx.clone())));
        let addr = listener.local_addr()?;
        let (stop_http, mut stop_rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            http::serve::serve(listener, app, config.http.clone(), shutdown).await;
        });
        tracing::info!(role = %role, %addr, "role started");
        Ok(Self {
            role,
            addr,
            ctx,
            server,
            stop_http,
            tasks,
        })
    }

    /// Graceful stop: no new requests or deliveries, finish what is in
    /// flight, flush the outbox, close the broker connection.
    pub async fn shutdown(self) {
        let grace = self.ctx.config.shutdown.grace;
        let started = std::time::Instant::now();
        self.stop_http.send_replace(true);
        let _ = tokio::time::timeout(grace, self.server).await;
        self.ctx
            .broker
            .stop_consuming(grace.saturating_sub(started.elapsed()))
            .await;
        let flushed = self
            .ctx
            .outbox
            .flush(grace.saturating_sub(started.elapsed()))
            .await;
        if !flushed {
            tracing::warn!(role = %self.role, "outbox not fully flushed; the rest is published at next start");
        }
        self.ctx.broker.close();
        self.ctx.outbox.abort();
        for t in self.tasks {
            t.abort();
        }
        self.ctx.pool.close();
        tracing::info!(role = %self.role, elapsed_ms = started.elapsed().as_millis() as u64, "role stopped");
    }
}

impl RunningRole {
    /// Stops everything at once, flushing nothing: what a SIGKILL leaves
    /// (used by the crash tests).
    pub async fn abort(self) {
        self.server.abort();
        // The listener is freed once the aborted task is dropped.
        let _ = self.server.await;
        self.ctx.broker.close();
        self.ctx.outbox.abort();
        for t in self.tasks {
            t.abort();
        }
        self.ctx.pool.close();
    }
}

async fn pool_sampler(ctx: AppState) {
    let max_idle = ctx.config.db(ctx.role).max_idle;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Some(n) = max_idle {
            db::pool::trim_idle(&ctx.pool, n);
        }
        ctx.metrics.observe_pool(ctx.pool.status());
    }
}
