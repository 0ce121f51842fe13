//! What `run` would fail on beyond the file itself, checked by `coregate check` without side
//! effects: the access-log file can be opened for appending, and every listen address (server,
//! `[[listener]]` and admin) can be bound by this process.
//!
//! Flow: `mod.rs` validates the file into a [`Config`] as usual, then hands it here; each problem
//! is a ([`KeyPath`], message) pair like a validation error, so it gets the same file:line:col.
//! Key files (`public_key_files`, `jwks_file`, `keys_file`), TLS certificates, keys, CAs, CRLs and
//! OCSP responses, and secrets from the environment are read by validation itself, so they need
//! nothing here.
//!
//! Nothing is created or bound for real: an existing log file is opened for appending (which
//! changes nothing), a missing one needs an existing, writable directory (`access(2)`, which is what
//! `open(O_CREAT)` will ask); addresses go through `runtime::listen::probe`, the same probe `run`
//! uses before binding, which binds a throw-away socket without ever listening. A reload never
//! rebinds listeners, so checking a file for the gateway already running on its addresses is done
//! with the probe off ([`Preflight::bind`] false, `check --no-bind-check`).

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::access_log::LogSink;
use super::model::Config;
use super::position::KeyPath;
use super::validate::Problems;

/// Which checks to run.
#[derive(Debug, Clone, Copy)]
pub struct Preflight {
    /// Probe `server.listen`, each `listener.listen` and `admin.listen`.
    pub bind: bool,
}

/// Every problem `run` would meet with `cfg`. `listen_is_list`: `server.listen` was written as an
/// array, so its errors are reported per element.
pub(super) fn problems(cfg: &Config, listen_is_list: bool, opts: Preflight) -> Problems {
    let mut out = Problems::new();
    if let LogSink::File(path) = &cfg.access_log.sink {
        if let Err(m) = appendable(path) {
            out.push((KeyPath::root().key("access_log").key("path"), m));
        }
    }
    if opts.bind {
        let listen = KeyPath::root().key("server").key("listen");
        for (i, &addr) in cfg.server.listen.iter().enumerate() {
            let p = if listen_is_list {
                listen.index(i)
            } else {
                listen.clone()
            };
            if let Err(m) = bindable(addr) {
                out.push((p, m));
            }
        }
        for (i, l) in cfg.listeners.iter().enumerate() {
            if let Err(m) = bindable(l.listen) {
                out.push((KeyPath::root().key("listener").index(i).key("listen"), m));
            }
        }
        if let Some(a) = &cfg.admin {
            if let Err(m) = bindable(a.listen) {
                out.push((KeyPath::root().key("admin").key("listen"), m));
            }
        }
    }
    out
}

fn bindable(addr: SocketAddr) -> Result<(), String> {
    crate::runtime::listen::probe(addr).map_err(|why| {
        if why.contains("already in use") {
            format!(
                "{why} (checking a file for the gateway that runs there, before a reload? \
                 pass --no-bind-check)"
            )
        } else {
            why
        }
    })
}

/// Whether the access log at `path` can be opened the way the writer opens it (append, create).
fn appendable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{shown} is a directory (expected a file path)")),
        Ok(_) => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot open {shown} for appending: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            match std::fs::metadata(dir) {
                Err(e) => Err(format!(
                    "cannot create {shown}: directory {}: {e}",
                    dir.display()
                )),
                Ok(m) if !m.is_dir() => Err(format!(
                    "cannot create {shown}: {} is not a directory",
                    dir.display()
                )),
                Ok(_) => writable_dir(dir).map_err(|e| {
                    format!("cannot create {shown}: directory {}: {e}", dir.display())
                }),
            }
        }
        Err(e) => Err(format!("cannot open {shown}: {e}")),
    }
}

/// `access(dir, W_OK | X_OK)`: whether a file could be created in `dir`.
fn writable_dir(dir: &Path) -> std::io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; access(2) only reads it.
    let rc = unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("coregate-preflight-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn log_paths() {
        let d = temp_dir("log");
        let new = d.join("access.log");
        appendable(&new).unwrap();
        assert!(!new.exists(), "the check must not create the file");
        std::fs::write(&new, b"line\n").unwrap();
        appendable(&new).unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"line\n");
        let e = appendable(&d).unwrap_err();
        assert!(e.ends_with("is a directory (expected a file path)"), "{e}");
        let e = appendable(&d.join("missing/access.log")).unwrap_err();
        assert!(e.contains("missing: No such file or directory"), "{e}");
        let e = appendable(&new.join("x.log")).unwrap_err();
        assert!(e.contains("Not a directory"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
