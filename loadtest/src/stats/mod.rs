//! Results: the run model and its reports.

pub mod model;
