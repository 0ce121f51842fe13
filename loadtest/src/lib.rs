//! coregate-load's library: every subcommand lives in its own module with its own clap `Args` and a
//! `main(args) -> u8` (exit status: 0 ok, 1 failure, 2 bad input).
//!
//! - `load`: the generator (thread-per-core on monoio, closed and open loop, scenarios, JWT minting)
//! - `stats`: per-thread HDR histograms merged, the result model, table/JSON/HTML reports
//! - `serve`: fixed-response backend (`/status/{code}`, `/delay/{ms}`, `/echo`, stalls for tests)
//! - `relay`: bare TCP relay, the floor baseline
//! - `compare`: the side-by-side harness (coregate, nginx, HAProxy, relay)
//! - `rt`: the monoio runtime every thread above runs on (io_uring + COOP_TASKRUN, or epoll)

pub mod compare;
pub mod load;
pub mod relay;
pub mod rt;
pub mod serve;
pub mod stats;
