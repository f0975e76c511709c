//! The `pgherald` command: `serve`, `migrate`, `token` (flags in
//! [`pgherald::cli`]).

use anyhow::Context as _;
use clap::Parser;
use pgherald::Application;
use pgherald::cli::{Cli, Command};
use pgherald::telemetry;

fn main() {
    let cli = Cli::parse();
    // Before the runtime: the trace exporter runs on a thread of its own,
    // and flushes when `_telemetry` drops, after the runtime has stopped.
    let result = telemetry::init(cli.log_format)
        .map_err(anyhow::Error::from)
        .and_then(|_telemetry| {
            tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(run(cli.command))
        });
    if let Err(e) = result {
        // One line with the cause chain; never a backtrace or a Debug dump.
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// `{e:#}` on one line: the chain joined by ": ", line breaks inside a
/// message (Postgres's DETAIL and HINT) as "; ", and a cause skipped when the
/// text already ends with it (errors that print their source themselves).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let repeated = text.strip_suffix(&part).is_some_and(|before| {
            before.is_empty() || !before.ends_with(|c: char| c.is_alphanumeric())
        });
        if part.is_empty() || repeated {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = args.config()?;
            let invalid = config.validate();
            if !invalid.is_empty() {
                // One line per invalid setting, all of them at once.
                for line in invalid {
                    eprintln!("error: {line}");
                }
                std::process::exit(1);
            }
            raise_open_file_limit(config.limits.max_connections);
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await;
        }
        Command::Migrate(args) => {
            let admin = args
                .admin_database_url
                .or_else(|| args.database_url.clone())
                .context("HERALD_ADMIN_DATABASE_URL or DATABASE_URL is required")?;
            let applied = pgherald::db::migrate::run(
                &admin,
                args.database_url.as_deref(),
                args.anon_role.as_deref(),
                args.demo,
            )
            .await
            .context("migration failed")?;
            eprintln!("migrations applied: {applied}");
        }
        Command::Token(args) => println!("{}", args.mint()?),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Lifts the open-file soft limit to the hard one (each WebSocket holds a
/// descriptor), and warns when even that is below `max_connections`.
fn raise_open_file_limit(max_connections: usize) {
    match pgherald::fdlimit::raise() {
        Ok((Some(soft), _)) if soft < max_connections as u64 + 64 => tracing::warn!(
            soft,
            max_connections,
            "the open-file limit is below HERALD_MAX_CONNECTIONS; raise the hard limit \
             (ulimit -Hn, LimitNOFILE) or connections will fail to be accepted"
        ),
        Ok((soft, hard)) => tracing::debug!(?soft, ?hard, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "the open-file limit could not be raised"),
    }
}
