//! Upstreams as one worker sees them: endpoints, a balancer and a connection pool each.
//!
//! Owns: [`UpstreamRt`], built per worker from an `UpstreamConfig`. The balancer (`balance.rs`) picks an
//! endpoint and tracks passive health; the pool (`pool.rs`) keeps idle keep-alive connections. Both sit
//! behind `RefCell` because only this worker's tasks touch them, and borrows never cross an await.

pub mod balance;
pub mod pool;

use std::cell::RefCell;
use std::net::SocketAddr;

use crate::config::UpstreamConfig;

pub struct UpstreamRt {
    pub index: usize,
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    /// `ip:port` of each endpoint, sent as Host to HTTP/1.0 clients' requests that carried none.
    pub host_text: Vec<String>,
    pub balancer: RefCell<balance::Balancer>,
    pub pool: RefCell<pool::Pool>,
    pub cfg: UpstreamConfig,
}

impl UpstreamRt {
    pub fn new(index: usize, cfg: &UpstreamConfig, worker: usize) -> Self {
        UpstreamRt {
            index,
            name: cfg.name.clone(),
            addrs: cfg.endpoints.iter().map(|e| e.addr).collect(),
            host_text: cfg.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            balancer: RefCell::new(balance::Balancer::new(cfg, worker as u64)),
            pool: RefCell::new(pool::Pool::new(
                cfg.endpoints.len(),
                cfg.max_idle_per_endpoint,
                cfg.idle_timeout,
            )),
            cfg: cfg.clone(),
        }
    }
}
