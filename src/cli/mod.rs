//! The command line of `pgherald`: its subcommands and their flags, each
//! flag mirrored by an environment variable (`pgherald serve --help` lists
//! them with their defaults). `main.rs` parses it and runs the command.

mod limits;
mod serve;
mod tokens;

use clap::{Parser, Subcommand};

pub use serve::ServeArgs;

use crate::telemetry::LogFormat;
pub use tokens::TokenArgs;

/// `pgherald`.
#[derive(Parser)]
#[command(
    name = "pgherald",
    version,
    about = "Realtime GraphQL subscriptions straight from Postgres"
)]
pub struct Cli {
    /// Log line format on stderr: text, or one JSON object per line.
    #[arg(
        long,
        global = true,
        env = "HERALD_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// `Serve` carries every serve flag; the enum is built once per process, so
// its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Serve GraphQL over HTTP and WebSocket.
    Serve(ServeArgs),
    /// Create roles and apply pgherald's migrations (and, with --demo, the demo schema).
    Migrate(MigrateArgs),
    /// Mint a development JWT (HS256).
    Token(TokenArgs),
}

/// `pgherald migrate`.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Owner or superuser connection string.
    #[arg(long, env = "HERALD_ADMIN_DATABASE_URL", hide_env_values = true)]
    pub admin_database_url: Option<String>,
    /// Login role's connection string (its password, if any, is set on the role).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Also create this role for anonymous connections.
    #[arg(long, env = "HERALD_ANON_ROLE")]
    pub anon_role: Option<String>,
    /// Also install the demo SaaS schema of examples/saas (tables in
    /// `public`); without it only the `herald` schema is installed.
    #[arg(
        long,
        env = "HERALD_MIGRATE_DEMO",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub demo: bool,
}
