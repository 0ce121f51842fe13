//! Results: the run model (`model`), per-thread HDR histograms and their merge (`hist`), and the
//! renderings of a finished run: the stdout table (`report`) and the self-contained HTML page (`html`).
//!
//! Data flows one way: each load thread fills its own histogram, `hist::merge` folds them, the
//! generator builds a `model::RunResult`, and `report`/`html` (and `compare`) only read that.

pub mod hist;
pub mod html;
pub mod model;
pub mod report;
