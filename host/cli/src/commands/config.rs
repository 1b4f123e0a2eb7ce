//! `aos config show|path`: the effective configuration (aos.toml + environment).

use anyhow::Result;
use clap::Subcommand;

use aos_daemon::config::Config;
use aos_daemon::Paths;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (defaults, $AOS_HOME/aos.toml, AOS_* variables), secrets masked.
    #[command(after_help = "Examples:\n  aos config show\n  AOS_MODEL=llama3.2 aos config show")]
    Show,
    /// Print the path of the config file.
    Path,
}

pub fn run(cmd: ConfigCmd) -> Result<i32> {
    let paths = Paths::new(crate::home::aos_home()?);
    match cmd {
        ConfigCmd::Show => print!("{}", Config::load(paths.home())?.show()),
        ConfigCmd::Path => println!("{}", paths.config().display()),
    }
    Ok(0)
}
