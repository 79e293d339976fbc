use clap::Parser;

fn main() {
    let cli = waypost::cli::Cli::parse();
    std::process::exit(waypost::control::main(cli));
}
