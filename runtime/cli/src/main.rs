//! `bosun`: thin entry point; everything lives in the `bosun_cli` library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bosun_cli::Cli::parse();
    bosun_cli::init_tracing(cli.verbose);
    match bosun_cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bosun: {e:#}");
            // An invalid configuration is a usage error, like a bad flag.
            if e.downcast_ref::<bosun_cli::serve::BadConfig>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
