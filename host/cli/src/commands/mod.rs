//! One module per `aos` subcommand group.
pub mod config;
pub mod driver;
pub mod kernel;
pub mod output;
pub mod procs;
pub mod run;
pub mod sandbox;
pub mod top;
