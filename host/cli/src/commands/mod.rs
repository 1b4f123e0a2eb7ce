//! One module per `aos` subcommand group.
pub mod driver;
pub mod run;
