//! The command line, nginx's flags.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "waypost",
    about = "A reverse proxy with nginx configuration and load balancers loaded as modules",
    disable_version_flag = true,
    disable_help_flag = true
)]
pub struct Cli {
    /// Show this help.
    #[arg(short = 'h', short_alias = '?', long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Show the version and exit.
    #[arg(short = 'v')]
    pub version: bool,
    /// Show the version and build details and exit.
    #[arg(short = 'V')]
    pub version_details: bool,
    /// Test the configuration and exit.
    #[arg(short = 't')]
    pub test: bool,
    /// Test the configuration, dump it to stdout and exit.
    #[arg(short = 'T')]
    pub dump: bool,
    /// Suppress non-error messages while testing the configuration.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// Send a signal to the running waypost: stop, quit, reopen, reload.
    #[arg(short = 's', value_name = "SIGNAL", value_parser = ["stop", "quit", "reopen", "reload"])]
    pub signal: Option<String>,
    /// The prefix relative paths start from (default: the current directory).
    #[arg(short = 'p', value_name = "PREFIX")]
    pub prefix: Option<PathBuf>,
    /// The configuration file (default: conf/waypost.conf).
    #[arg(short = 'c', value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Global directives read before the configuration file.
    #[arg(short = 'g', value_name = "DIRECTIVES")]
    pub globals: Option<String>,
    /// Where shipped modules are found by directive name (default: the
    /// directory of the waypost binary).
    #[arg(long = "modules-dir", value_name = "DIR")]
    pub modules_dir: Option<PathBuf>,
}
