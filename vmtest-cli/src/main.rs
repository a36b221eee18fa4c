//! `vmtest`: runs a command, or every target of a `vmtest.toml`, in QEMU
//! guests booted from chosen Linux kernels. See `cli` for the command line
//! and `exit_codes` for what it exits with.

mod cli;
mod config;
mod exit_codes;
mod image;
mod jobs;
mod kernel;
mod run;
mod shell;
mod signals;
mod start;
mod ui;

use clap::Parser;

fn main() {
    // In a guest, this binary is the test server that runs the commands.
    vmtest_guest::serve_if_requested(None);
    let interrupted = signals::watch();
    let code = run::main(cli::Args::parse());
    // Every VM is down and every file gone by now.
    std::process::exit(interrupted.exit_code(code))
}
