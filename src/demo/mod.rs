//! `coregate demo`: the gateway on an embedded config, in front of three built-in demo services.
//!
//! Owns: starting the demo services (`services.rs`) on ephemeral loopback ports, filling their
//! addresses into the embedded config (`demo.toml`), validating it with the same pipeline as
//! `coregate check`, starting the gateway, and printing curl commands to try. Runs until Ctrl-C.
//! `--admin ADDR` replaces the embedded admin address (port 0: a free one, named by the ready line).

mod services;

use std::process::ExitCode;

use crate::cli::Tuning;

const DEMO_CONFIG: &str = include_str!("demo.toml");

/// `admin`: `--admin`, replacing the embedded config's admin address.
pub fn run(tuning: &Tuning, admin: Option<std::net::SocketAddr>) -> ExitCode {
    let mut text = DEMO_CONFIG.to_string();
    for name in ["users", "orders", "products"] {
        let addr = match services::start(name) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("coregate: demo service {name}: {e}");
                return ExitCode::FAILURE;
            }
        };
        text = text.replace(&format!("@{name}@"), &addr.to_string());
    }
    let mut cfg = match crate::config::parse_str(&text, "demo.toml") {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("coregate: built-in demo config is invalid (a bug):\n{errs}");
            return ExitCode::FAILURE;
        }
    };
    let listen = tuning
        .listen
        .first()
        .copied()
        .unwrap_or(cfg.server.listen[0]);
    if let Some(listen) = admin {
        cfg.admin = Some(crate::config::AdminConfig { listen });
    }
    let admin = cfg.admin.as_ref().map(|a| a.listen);
    eprintln!(
        "coregate demo: users, orders and products services are up; try:\n\
         \x20 curl -i http://{listen}/api/users\n\
         \x20 curl -i http://{listen}/api/users/42\n\
         \x20 curl -i http://{listen}/api/orders -H 'x-user-id: 7'\n\
         \x20 curl -i -X POST http://{listen}/api/orders -d '{{\"item\":\"book\"}}'\n\
         \x20 curl -i http://{listen}/api/products/3\n\
         \x20 curl -i -X DELETE http://{listen}/api/products/3    # 405 with Allow\n\
         \x20 curl -i http://{listen}/nope                        # 404, JSON error\n\
         \x20 curl -s http://{}/metrics\n\
         Ctrl-C stops it.",
        admin.map(|a| a.to_string()).unwrap_or_default()
    );
    if let Err(why) = crate::runtime::listen::probe(listen) {
        if !tuning.reuse_port_with_others {
            eprintln!("coregate: {why} (pick another port with --listen 127.0.0.1:PORT)");
            return ExitCode::FAILURE;
        }
    }
    crate::cli::serve(cfg, tuning, None)
}
