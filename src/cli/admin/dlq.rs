//! `dop admin dlq list | redrive QUEUE`: the command line and its text
//! output; the work is in `messaging::dlq`, which the order role's
//! `/admin/dlq` routes (and so the console) share.

use std::{fmt::Write, path::Path, process::ExitCode};

pub use crate::messaging::dlq::{
    authorize, list, redrive, DeadLetter, DlqStatus, RedriveReport, Skipped, SAMPLE,
};

use crate::{
    cli::admin::table::{self, clip},
    config::Config,
};

#[derive(clap::Args, Debug)]
pub struct Opts {
    #[command(subcommand)]
    pub action: DlqAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqAction {
    /// Depth of each dead-letter queue and why its first messages died.
    List(ListOpts),
    /// Send dead letters back where they came from (operator action: needs
    /// admin.token configured).
    Redrive(RedriveOpts),
}

#[derive(clap::Args, Debug)]
pub struct ListOpts {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RedriveOpts {
    /// The consumed queue or its dead-letter queue, e.g. inventory.commands
    /// or inventory.commands.dlq.
    pub queue: String,
    /// At most this many messages (default: all that are there at the start).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Must equal admin.token when given.
    #[arg(long)]
    pub token: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// Depths as a table, then the sampled messages of each non-empty DLQ.
pub fn render_list(statuses: &[DlqStatus]) -> String {
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                s.dlq.clone(),
                s.depth
                    .map_or_else(|| "missing".to_string(), |d| d.to_string()),
            ]
        })
        .collect();
    let mut out = table::render(&["DLQ", "DEPTH"], &rows);
    for s in statuses.iter().filter(|s| !s.samples.is_empty()) {
        let _ = writeln!(
            out,
            "\n{} (first {} of {}):",
            s.dlq,
            s.samples.len(),
            s.depth.unwrap_or(0)
        );
        let rows: Vec<Vec<String>> = s
            .samples
            .iter()
            .map(|m| {
                vec![
                    or_dash(&m.message_id),
                    or_dash(&m.routing_key),
                    or_dash(&m.saga_id),
                    or_dash(&m.retry_count),
                    clip(&or_dash(&m.reason), 100),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &["MESSAGE", "ROUTING_KEY", "SAGA", "RETRIES", "REASON"],
            &rows,
        ));
    }
    out
}

pub fn render_redrive(r: &RedriveReport) -> String {
    let mut out = format!(
        "redrive {}: moved {} of {} message(s) back to their original exchange",
        r.dlq, r.moved, r.depth_at_start
    );
    if !r.skipped.is_empty() {
        let _ = write!(out, "; {} left in the queue:", r.skipped.len());
        for s in &r.skipped {
            let _ = write!(out, "\n  {}: {}", or_dash(&s.message_id), s.why);
        }
    }
    if let Some(e) = &r.error {
        let _ = write!(out, "\nstopped: {e}");
    }
    out.push('\n');
    out
}

pub async fn run(opts: Opts, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, None)?;
    match opts.action {
        DlqAction::List(o) => {
            let statuses = list(&cfg).await?;
            if o.json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", render_list(&statuses));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Redrive(o) => {
            let r = redrive(&cfg, &o.queue, o.limit, o.token.as_deref()).await?;
            if o.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", render_redrive(&r));
            }
            Ok(if r.error.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
