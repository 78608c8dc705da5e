//! `kandji-collector`: the binary. Thin: parse the command line, set up logging, dispatch.

use anyhow::Result;
use clap::Parser;

use kandji_collector::cli::Cli;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        kandji_collector::cli::LogFormat::Text => logs.init(),
        kandji_collector::cli::LogFormat::Json => logs.json().flatten_event(false).init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(kandji_collector::commands::dispatch(cli))
}
