//! `kandji-collector`: the binary. Thin: parse the command line, set up logging, dispatch.

use anyhow::Result;
use clap::Parser;

use kandji_collector::cli::Cli;

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(kandji_collector::commands::dispatch(cli))
}
