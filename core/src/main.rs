use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = waypost::cli::Cli::parse();
    std::process::exit(waypost::control::main(cli));
}
