//! coregate-load: the bundled load generator and benchmark harness.
//!
//! This member is a placeholder until its own issue (#3) lands: it only explains itself, so that
//! nobody mistakes it for a working generator. Until then measure with `wrk` (see README).

fn main() {
    eprintln!("coregate-load is not implemented yet (see issue 3); use wrk for now, as the README describes");
    std::process::exit(2);
}
