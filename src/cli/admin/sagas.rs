//! `dop admin sagas [list flags] | show SAGA_ID | retry SAGA_ID`: sagas
//! through the order role's HTTP API (so it works behind a load balancer),
//! as an aligned table or, with `--json`, the API's own JSON. Reads send
//! `admin.read_token` (else `admin.token`), retry `admin.token`.

use std::{fmt::Write, path::Path, process::ExitCode, time::Duration};

use anyhow::Context;
use hyper::{Method, StatusCode};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use super::table::{self, clip, human_age};
use crate::{config::Config, http::client::Client, saga::SagaStatus};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Opts {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub list: ListOpts,
    /// Base URL of the order role (default: admin.url of the config).
    #[arg(long, global = true)]
    pub url: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// One saga: its order and its timeline.
    Show(ShowOpts),
    /// Re-drive a saga: re-send the release of a failed compensation, or the
    /// pending command of a saga in flight. Needs the admin token.
    Retry(RetryOpts),
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct ListOpts {
    /// Only sagas in this status (IN_PROGRESS, COMPENSATING, COMPLETED,
    /// COMPENSATED, FAILED).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<String>,
    /// At most this many sagas (1 to 1000; the API's default is 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only sagas older than this saga id (the next page).
    #[arg(long)]
    pub before: Option<String>,
    /// Only sagas that have not moved for at least this long (e.g. 5m);
    /// with --status in_progress, the stuck ones.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    pub idle_for: Option<Duration>,
    /// Only sagas created at least this long ago (e.g. 1h).
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    pub older_than: Option<Duration>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ShowOpts {
    pub saga_id: String,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RetryOpts {
    pub saga_id: String,
    /// Bearer token (default: admin.token of the config, DOP_ADMIN__TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_status(s: &str) -> Result<String, String> {
    let up = s.to_ascii_uppercase();
    SagaStatus::parse(&up)
        .map(|st| st.as_str().to_string())
        .ok_or_else(|| {
            "expected IN_PROGRESS, COMPENSATING, COMPLETED, COMPENSATED or FAILED".to_string()
        })
}

/// A saga as `GET /admin/sagas` shows it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SagaView {
    pub saga_id: String,
    pub order_id: i64,
    pub status: String,
    pub current_step: String,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub age_seconds: i64,
}

/// `GET /admin/sagas`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SagaList {
    pub count: usize,
    pub sagas: Vec<SagaView>,
    pub next_before: Option<String>,
}

/// The order of a saga, as `GET /admin/sagas/:id` shows it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct OrderView {
    pub order_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub total_amount: serde_json::Number,
    pub status: String,
}

/// One row of a saga's timeline.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SagaEvent {
    pub id: i64,
    pub event: String,
    pub from_status: Option<String>,
    pub from_step: Option<String>,
    pub to_status: String,
    pub to_step: String,
    pub message_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: String,
}

/// `GET /admin/sagas/:id`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SagaDetail {
    pub saga: SagaView,
    pub order: Option<OrderView>,
    pub events: Vec<SagaEvent>,
}

/// `POST /admin/sagas/:id/retry`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RetryAccepted {
    pub saga_id: String,
    pub action: String,
    pub message_id: String,
}

/// Why a call to the order role failed, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminApiError {
    #[error("cannot reach the order role at {url}: {cause}; is `dop serve` running?")]
    Unreachable { url: String, cause: String },
    #[error("the order role refused: {error} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        error: String,
    },
    #[error("unexpected answer from the order role (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
    #[error(
        "refusing to {what}: no admin token; pass --token or set admin.token (DOP_ADMIN__TOKEN)"
    )]
    NoToken { what: String },
}

/// The order role's admin API.
pub struct AdminApi {
    base: String,
    client: Client,
    /// Sent with the reads (list, show) when set.
    read_token: Option<String>,
}

impl AdminApi {
    /// `base` is the order role's URL, e.g. `http://127.0.0.1:8081`.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let u = url::Url::parse(base).with_context(|| format!("--url {base:?} is not a URL"))?;
        if u.scheme() != "http" {
            anyhow::bail!(
                "--url {base:?}: only http:// is supported; reach the order role directly or through a plain-HTTP listener"
            );
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client: Client::new(Duration::from_secs(10)),
            read_token: None,
        })
    }

    /// Sends `token` as the bearer token of the reads; an empty one is
    /// not sent (a stack without tokens leaves the reads open).
    pub fn with_read_token(mut self, token: &str) -> Self {
        self.read_token = (!token.is_empty()).then(|| token.to_string());
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        want: StatusCode,
    ) -> anyhow::Result<(T, Value)> {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let resp = self
            .client
            .send(method, &url, None, &headers)
            .await
            .map_err(|e| AdminApiError::Unreachable {
                url: self.base.clone(),
                cause: format!("{e:#}"),
            })?;
        let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
        if resp.status != want {
            let envelope = body
                .as_ref()
                .and_then(|b| Some((b.get("error")?.as_str()?, b.get("code")?.as_str()?)));
            return Err(match envelope {
                Some((error, code)) => AdminApiError::Api {
                    status: resp.status.as_u16(),
                    code: code.into(),
                    error: error.into(),
                },
                None => AdminApiError::Unexpected {
                    status: resp.status.as_u16(),
                    body: clip(&resp.text(), 300),
                },
            }
            .into());
        }
        let raw = body.ok_or_else(|| AdminApiError::Unexpected {
            status: resp.status.as_u16(),
            body: clip(&resp.text(), 300),
        })?;
        let typed = serde_json::from_value(raw.clone()).with_context(|| {
            format!("the order role's answer to {path} is not what dop expects")
        })?;
        Ok((typed, raw))
    }

    /// `GET /admin/sagas`, newest first.
    pub async fn list(&self, o: &ListOpts) -> anyhow::Result<(SagaList, Value)> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = &o.status {
            q.append_pair("status", s);
        }
        if let Some(n) = o.limit {
            q.append_pair("limit", &n.to_string());
        }
        if let Some(b) = &o.before {
            q.append_pair("before", b);
        }
        if let Some(d) = o.idle_for {
            q.append_pair("idle_for", &d.as_secs().to_string());
        }
        if let Some(d) = o.older_than {
            q.append_pair("older_than", &d.as_secs().to_string());
        }
        let q = q.finish();
        let path = if q.is_empty() {
            "/admin/sagas".to_string()
        } else {
            format!("/admin/sagas?{q}")
        };
        let token = self.read_token.as_deref();
        self.call(Method::GET, &path, token, StatusCode::OK).await
    }

    /// `GET /admin/sagas/:id`.
    pub async fn show(&self, saga_id: &str) -> anyhow::Result<(SagaDetail, Value)> {
        let path = format!("/admin/sagas/{}", encode(saga_id));
        let token = self.read_token.as_deref();
        self.call(Method::GET, &path, token, StatusCode::OK).await
    }

    /// `POST /admin/sagas/:id/retry` with the bearer token; an empty token is
    /// refused here, without a request.
    pub async fn retry(
        &self,
        saga_id: &str,
        token: &str,
    ) -> anyhow::Result<(RetryAccepted, Value)> {
        if token.is_empty() {
            return Err(AdminApiError::NoToken {
                what: format!("retry saga {saga_id}"),
            }
            .into());
        }
        let path = format!("/admin/sagas/{}/retry", encode(saga_id));
        self.call(Method::POST, &path, Some(token), StatusCode::ACCEPTED)
            .await
    }
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// The list as a table: id, order, status, step, age (and the failure
/// reason when any saga has one).
pub fn render_list(l: &SagaList) -> String {
    let with_reason = l.sagas.iter().any(|s| s.failure_reason.is_some());
    let mut header = vec!["SAGA", "ORDER", "STATUS", "STEP", "AGE"];
    if with_reason {
        header.push("REASON");
    }
    let rows: Vec<Vec<String>> = l
        .sagas
        .iter()
        .map(|s| {
            let mut r = vec![
                s.saga_id.clone(),
                s.order_id.to_string(),
                s.status.clone(),
                s.current_step.clone(),
                human_age(s.age_seconds),
            ];
            if with_reason {
                r.push(clip(&dash(s.failure_reason.as_deref()), 60));
            }
            r
        })
        .collect();
    let mut out = table::render(&header, &rows);
    let _ = write!(
        out,
        "{} saga{}, newest first",
        l.count,
        if l.count == 1 { "" } else { "s" }
    );
    if let Some(next) = &l.next_before {
        let _ = write!(out, "; next page: --before {next}");
    }
    out.push('\n');
    out
}

/// The saga's header, its order, then its timeline.
pub fn render_detail(d: &SagaDetail) -> String {
    let s = &d.saga;
    let mut out = String::new();
    let _ = writeln!(out, "saga     {}", s.saga_id);
    match &d.order {
        Some(o) => {
            let _ = writeln!(
                out,
                "order    {}  ({}; product {}, {} unit(s), {})",
                o.order_id, o.status, o.product_id, o.quantity, o.total_amount
            );
        }
        None => {
            let _ = writeln!(out, "order    {}  (not found)", s.order_id);
        }
    }
    let _ = writeln!(out, "status   {} / {}", s.status, s.current_step);
    if let Some(r) = &s.failure_reason {
        let _ = writeln!(out, "reason   {r}");
    }
    let _ = writeln!(
        out,
        "created  {}  ({} ago)",
        s.created_at,
        human_age(s.age_seconds)
    );
    let _ = writeln!(out, "updated  {}", s.updated_at);
    let _ = writeln!(out);
    let rows: Vec<Vec<String>> = d
        .events
        .iter()
        .map(|e| {
            let from = match (&e.from_status, &e.from_step) {
                (Some(st), Some(sp)) => format!("{st}/{sp}"),
                _ => "-".into(),
            };
            vec![
                e.created_at.clone(),
                e.event.clone(),
                from,
                format!("{}/{}", e.to_status, e.to_step),
                dash(e.message_id.as_deref()),
                clip(&dash(e.reason.as_deref()), 60),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["TIME", "EVENT", "FROM", "TO", "MESSAGE", "REASON"],
        &rows,
    ));
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

pub async fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, None)?;
    // Reads carry the read-only token when there is one, else the
    // operator's: either serves them once tokens are configured.
    let read = if cfg.admin.read_token.is_empty() {
        &cfg.admin.token
    } else {
        &cfg.admin.read_token
    };
    let api = AdminApi::new(opts.url.as_deref().unwrap_or(&cfg.admin.url))?
        .with_read_token(read.expose());
    match opts.action {
        None => {
            let (list, raw) = api.list(&opts.list).await?;
            if opts.list.json {
                println!("{}", pretty(&raw));
            } else {
                print!("{}", render_list(&list));
            }
        }
        Some(Action::Show(o)) => {
            let (detail, raw) = api.show(&o.saga_id).await?;
            if o.json {
                println!("{}", pretty(&raw));
            } else {
                print!("{}", render_detail(&detail));
            }
        }
        Some(Action::Retry(o)) => {
            let token = o
                .token
                .unwrap_or_else(|| cfg.admin.token.expose().to_string());
            let (r, raw) = api.retry(&o.saga_id, &token).await?;
            if o.json {
                println!("{}", pretty(&raw));
            } else {
                println!(
                    "saga {}: {} (message {})",
                    r.saga_id, r.action, r.message_id
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_in_any_case() {
        assert_eq!(parse_status("failed").unwrap(), "FAILED");
        assert!(parse_status("DONE").is_err());
    }

    #[test]
    fn a_list_renders_as_a_table() {
        let l: SagaList = serde_json::from_value(serde_json::json!({
            "count": 1,
            "sagas": [{"saga_id": "s1", "order_id": 1, "status": "FAILED",
                "current_step": "RESERVING_INVENTORY", "failure_reason": "INSUFFICIENT_STOCK",
                "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
                "age_seconds": 125}],
            "next_before": "s1"
        }))
        .unwrap();
        let t = render_list(&l);
        assert_eq!(
            t,
            "SAGA  ORDER  STATUS  STEP                 AGE    REASON\n\
             s1    1      FAILED  RESERVING_INVENTORY  2m05s  INSUFFICIENT_STOCK\n\
             1 saga, newest first; next page: --before s1\n"
        );
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(AdminApi::new("http://127.0.0.1:8081/").is_ok());
        assert!(AdminApi::new("https://x").is_err());
        assert!(AdminApi::new("nope").is_err());
    }
}
