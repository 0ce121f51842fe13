//! Config generations and hot reload, on the control thread.
//!
//! Owns: [`Shared`] (one generation's process-wide, read-only parts: config, auth state, limiter
//! tables, access log) and [`Controller`], the only place a new generation is made. A reload
//! (`SIGHUP` or admin `POST /reload`, both queued to the `coregate-control` thread as [`Cmd`]s so
//! reloads never overlap) runs:
//!
//! ```text
//! read + parse + validate the file (config::load_file: every error, with key path and position)
//!  -> apply the command-line overrides again
//!  -> refuse changes that need a restart (listeners, worker count, admin address)
//!  -> build the new generation: auth state rebuilt (JWKS sets with an unchanged URL keep their
//!     keys); limiter tables and the access log reused when their config is unchanged (buckets and
//!     quota counters keep their state)
//!  -> send it to every worker (Control::Reload) and wait for each to switch
//! ```
//! Any error leaves every worker on the old generation; the errors are logged and returned to the
//! admin caller. [`Status`] is what the admin thread reads: the effective config (for `/config`),
//! the generation number, reload counters and DNS discovery's counters.
//!
//! DNS discovery makes generations too: the `coregate-discovery` thread ([`Discovery`], owned
//! here) reports an upstream whose names now resolve to a different set ([`Found`]); the controller
//! copies the current config with that upstream's endpoints replaced and switches workers the same
//! way ([`Controller::switch`]; no file is read, the reload counters do not move).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};

use super::control::{Control, ControlTx};
use crate::accesslog::AccessLog;
use crate::auth::AuthShared;
use crate::config::{self, Config};
use crate::discovery::{Discovery, DnsStats, Found};
use crate::otlp::Exporter;
use crate::ratelimit::LimitsShared;
use crate::upstream::health::HealthBoard;
use crate::upstream::probe::Prober;

/// How long a reload waits for every worker to switch.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One generation's process-wide parts.
pub struct Shared {
    pub generation: u64,
    pub cfg: Arc<Config>,
    pub auth: Arc<AuthShared>,
    pub limits: Arc<LimitsShared>,
    pub log: Arc<AccessLog>,
    /// The OTLP span exporter (disabled without `[tracing]`).
    pub otlp: Arc<Exporter>,
    /// Route bulkheads: in-flight counters every worker shares.
    pub bulkheads: Arc<crate::proxy::bulkhead::Bulkheads>,
    /// Active health verdicts (`upstream::probe` writes them, balancers read them).
    pub health: Arc<HealthBoard>,
}

impl Shared {
    /// Generation 1, at start.
    pub fn first(cfg: Arc<Config>, workers: usize) -> Result<Arc<Shared>, String> {
        Ok(Arc::new(Shared {
            generation: 1,
            auth: AuthShared::start(&cfg, None)?,
            limits: LimitsShared::new(&cfg, workers),
            log: AccessLog::start(&cfg.access_log)?,
            otlp: Exporter::start(cfg.tracing.as_ref())?,
            bulkheads: Arc::new(crate::proxy::bulkhead::Bulkheads::new(&cfg, None)),
            health: Arc::new(HealthBoard::new(&cfg, None)),
            cfg,
        }))
    }
}

/// Where a reload reads its config from.
pub struct ReloadSource {
    pub path: PathBuf,
    /// Re-applies the command-line overrides (`--listen`, `--drain-timeout`) to the new file.
    pub apply: Box<dyn Fn(&mut Config) + Send>,
}

/// What the admin thread reads about generations and reloads.
pub struct Status {
    pub config: ArcSwap<Config>,
    pub log: ArcSwap<AccessLog>,
    pub otlp: ArcSwap<Exporter>,
    /// The current generation's health verdicts (for metrics).
    pub health: ArcSwap<HealthBoard>,
    /// The current generation's bulkheads (for metrics).
    pub bulkheads: ArcSwap<crate::proxy::bulkhead::Bulkheads>,
    pub generation: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub last_ok: AtomicBool,
    pub started: std::time::Instant,
    /// DNS discovery's per-upstream counters.
    pub dns: Arc<DnsStats>,
}

/// Requests to the control thread.
pub enum Cmd {
    /// Reload the config; the result goes to the sender when there is one (admin), else only to
    /// the log (SIGHUP).
    Reload(Option<Sender<Result<u64, Vec<String>>>>),
    /// Reopen the access-log file (SIGUSR1).
    Reopen,
}

/// The control thread's state.
pub struct Controller {
    source: Option<ReloadSource>,
    current: Arc<Shared>,
    workers: Vec<ControlTx>,
    status: Arc<Status>,
    /// The health-check thread (it stops when this is dropped).
    prober: Prober,
    /// The discovery thread (it stops when this is dropped) and what it finds.
    discovery: Discovery,
    found: Receiver<Found>,
}

impl Controller {
    pub fn new(
        source: Option<ReloadSource>,
        current: Arc<Shared>,
        workers: Vec<ControlTx>,
    ) -> Result<Self, String> {
        let prober = Prober::start(current.health.clone())?;
        let (found_tx, found) = crossbeam_channel::unbounded();
        let discovery = Discovery::start(current.cfg.clone(), found_tx)?;
        let status = Arc::new(Status {
            config: ArcSwap::new(current.cfg.clone()),
            log: ArcSwap::new(current.log.clone()),
            otlp: ArcSwap::new(current.otlp.clone()),
            health: ArcSwap::new(current.health.clone()),
            bulkheads: ArcSwap::new(current.bulkheads.clone()),
            generation: AtomicU64::new(current.generation),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_ok: AtomicBool::new(true),
            started: std::time::Instant::now(),
            dns: discovery.stats(),
        });
        Ok(Controller {
            source,
            current,
            workers,
            status,
            prober,
            discovery,
            found,
        })
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Serves commands until every sender is gone, on a thread named `coregate-control`.
    pub fn spawn(mut self, cmds: Receiver<Cmd>) -> Result<(), String> {
        std::thread::Builder::new()
            .name("coregate-control".into())
            .spawn(move || loop {
                crossbeam_channel::select! {
                    recv(cmds) -> cmd => match cmd {
                        Ok(Cmd::Reload(reply)) => {
                            let r = self.reload();
                            if let Some(reply) = reply {
                                let _ = reply.send(r);
                            }
                        }
                        Ok(Cmd::Reopen) => self.current.log.reopen(),
                        // every sender is gone: dropping self stops the prober and discovery
                        Err(_) => return,
                    },
                    recv(self.found) -> f => {
                        if let Ok(f) = f {
                            self.discovered(f);
                        }
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot spawn the control thread: {e}"))
    }

    /// One reload, with its outcome logged and counted. Ok: the new generation number.
    pub fn reload(&mut self) -> Result<u64, Vec<String>> {
        let r = self.try_reload();
        match &r {
            Ok(g) => {
                self.status.reloads_ok.fetch_add(1, Ordering::Relaxed);
                self.status.last_ok.store(true, Ordering::Relaxed);
                eprintln!("coregate: reloaded config, generation {g}");
            }
            Err(errors) => {
                self.status.reloads_failed.fetch_add(1, Ordering::Relaxed);
                self.status.last_ok.store(false, Ordering::Relaxed);
                eprintln!(
                    "coregate: reload failed, still on generation {}: {} error(s)",
                    self.current.generation,
                    errors.len()
                );
                for e in errors {
                    eprintln!("  {e}");
                }
            }
        }
        r
    }

    /// Applies a changed endpoint set while the upstream still has the specs that were resolved
    /// (a reload in between may have changed them; the discovery thread then has the new ones).
    fn discovered(&mut self, f: Found) {
        let cfg = &self.current.cfg;
        let Some(i) = (cfg.upstreams.iter())
            .position(|u| u.name == f.upstream && u.discovery.as_ref() == Some(&f.specs))
        else {
            return;
        };
        if cfg.upstreams[i].endpoints == f.endpoints {
            return;
        }
        let mut next = Config::clone(cfg);
        next.upstreams[i].endpoints = f.endpoints;
        let addrs: Vec<String> = (next.upstreams[i].endpoints.iter())
            .map(|e| e.addr.to_string())
            .collect();
        let t0 = std::time::Instant::now();
        match self.switch(next) {
            Ok(g) => eprintln!(
                "coregate: dns: upstream {} now has {} endpoint(s) ({}), generation {g}, \
                 workers switched in {:.1} ms",
                f.upstream,
                addrs.len(),
                addrs.join(", "),
                t0.elapsed().as_secs_f64() * 1e3
            ),
            Err(errors) => eprintln!(
                "coregate: dns: upstream {}: cannot switch to the new endpoints: {}",
                f.upstream,
                errors.join("; ")
            ),
        }
    }

    fn try_reload(&mut self) -> Result<u64, Vec<String>> {
        let Some(source) = &self.source else {
            return Err(vec![
                "reload needs a config file; this gateway runs the built-in demo config".into(),
            ]);
        };
        let mut cfg = config::load_file(&source.path)
            .map_err(|errs| errs.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        (source.apply)(&mut cfg);
        restart_only(&self.current.cfg, &cfg)?;
        self.switch(cfg)
    }

    /// Builds the generation for `cfg` from the current one and switches every worker to it.
    fn switch(&mut self, cfg: Config) -> Result<u64, Vec<String>> {
        let old = &self.current;
        let cfg = Arc::new(cfg);
        let auth = AuthShared::start(&cfg, Some(&old.auth)).map_err(|e| vec![e])?;
        let limits_same = old.cfg.rate_limits == cfg.rate_limits
            && old.cfg.quotas == cfg.quotas
            && old.cfg.tiers == cfg.tiers
            && old.cfg.redis == cfg.redis;
        let limits = if limits_same {
            old.limits.clone()
        } else {
            LimitsShared::new(&cfg, self.workers.len())
        };
        let log = if old.cfg.access_log == cfg.access_log {
            old.log.clone()
        } else {
            AccessLog::start(&cfg.access_log).map_err(|e| vec![e])?
        };
        let otlp = if old.cfg.tracing == cfg.tracing {
            old.otlp.clone()
        } else {
            Exporter::start(cfg.tracing.as_ref()).map_err(|e| vec![e])?
        };
        let bulkheads = crate::proxy::bulkhead::Bulkheads::new(&cfg, Some(&old.bulkheads));
        let health = Arc::new(HealthBoard::new(&cfg, Some(&old.health)));
        let next = Arc::new(Shared {
            generation: old.generation + 1,
            bulkheads: Arc::new(bulkheads),
            health,
            cfg,
            auth,
            limits,
            log,
            otlp,
        });
        // the prober writes the new board from now on: verdicts that change while workers switch
        // land where the new generation reads them (the old board stops changing)
        self.prober.update(next.health.clone());
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        for w in &self.workers {
            w.send(Control::Reload(next.clone(), ack_tx.clone()));
        }
        // only the workers' clones remain: a worker that already exited (drained) drops its own
        drop(ack_tx);
        let deadline = std::time::Instant::now() + SWITCH_TIMEOUT;
        let mut switched = 0;
        while switched < self.workers.len() && ack_rx.recv_deadline(deadline).is_ok() {
            switched += 1;
        }
        if switched < self.workers.len() {
            // a stuck worker switches when it reads the message; an exited one never will
            eprintln!(
                "coregate: reload: {switched} of {} workers confirmed the switch",
                self.workers.len()
            );
        }
        self.status.config.store(next.cfg.clone());
        self.status.log.store(next.log.clone());
        self.status.otlp.store(next.otlp.clone());
        self.status.health.store(next.health.clone());
        self.status.bulkheads.store(next.bulkheads.clone());
        // Release: an admin read that sees this generation sees the stores above
        self.status
            .generation
            .store(next.generation, Ordering::Release);
        self.discovery.update(next.cfg.clone());
        self.current = next;
        Ok(self.current.generation)
    }
}

/// Errors for the settings a running gateway cannot change.
fn restart_only(old: &Config, new: &Config) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut a = old.server.listen.clone();
    let mut b = new.server.listen.clone();
    a.sort();
    b.sort();
    if a != b {
        errors.push(format!(
            "server.listen: changing listeners ({} -> {}) needs a restart",
            fmt_addrs(&a),
            fmt_addrs(&b)
        ));
    }
    if let Some(e) = crate::config::tls::listeners_need_restart(old, new) {
        errors.push(e);
    }
    if old.server.workers != new.server.workers {
        errors.push(format!(
            "server.workers: changing the worker count ({} -> {}) needs a restart",
            old.server.workers, new.server.workers
        ));
    }
    let admin = |c: &Config| c.admin.as_ref().map(|a| a.listen);
    if admin(old) != admin(new) {
        errors.push("admin.listen: changing the admin listener needs a restart".into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn fmt_addrs(a: &[std::net::SocketAddr]) -> String {
    a.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
