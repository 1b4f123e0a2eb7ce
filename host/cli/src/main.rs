//! `aos`: the AgentOS command line.

mod commands;
mod home;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "aos", version, about = "AgentOS: run LLM agents as processes", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Work with driver components: list, inspect, install, remove, call.
    #[command(subcommand)]
    Driver(commands::driver::DriverCmd),
    /// Run one agent to completion in this process, printing its log.
    Run(commands::run::RunArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        match cli.cmd {
            Cmd::Driver(c) => commands::driver::run(c).await,
            Cmd::Run(a) => commands::run::run(a).await,
        }
    });
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
