//! Placeholder until this subcommand lands (issue 3).

/// Arguments (none yet).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Not implemented yet: exits 2.
pub fn main(_: ServeArgs) -> u8 {
    eprintln!("coregate-load: this subcommand is not implemented yet");
    2
}
