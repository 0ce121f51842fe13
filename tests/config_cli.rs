//! The command line and strict config: `coregate check` accepts examples/gateway.toml and a
//! minimal config (exit 0, "ok" on stdout), reports every problem of a broken file at once as
//! `FILE:LINE:COL: KEY.PATH: message` (unknown key, bad value, dangling upstream reference) and
//! exits 1, and `coregate run` with a broken config exits non-zero without ever listening.

mod common;
use common::*;
use std::path::Path;

/// A config with exactly three problems, on lines 3, 11 and 16.
const BROKEN: &str = r#"[server]
workers = 2
listn = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[upstream]]
name = "users"
endpoints = ["127.0.0.1:9001"]
connect_timeout = "5 parsecs"

[[route]]
name = "users"
path_prefix = "/api/users"
upstream = "user"
"#;

/// (line, text the error's KEY.PATH part must contain, text the message must contain)
const BROKEN_ERRORS: &[(usize, &str, &str)] = &[
    (3, "server.listn", "unknown key"),
    (11, "connect_timeout", ""),
    (16, ".upstream", "no upstream named \"user\""),
];

fn check(path: &Path) -> (Option<std::process::ExitStatus>, String, String) {
    run_cli(
        &["check", "--config", &path.display().to_string()],
        secs(30),
    )
}

#[test]
fn check_accepts_the_shipped_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml");
    assert!(
        example.exists(),
        "{} is missing: the README quickstart and this test need it",
        example.display()
    );
    // With the variables its header says to export. The example's fixed ports (8080, 8081, 9901)
    // may be taken on a developer's machine; that the file runs is `example_runs_on_a_fresh_host`'s
    // job, with its addresses made ephemeral.
    let checked = std::process::Command::new(bin())
        .args([
            "check",
            "--config",
            &example.display().to_string(),
            "--no-bind-check",
        ])
        .envs(EXAMPLE_ENV.iter().copied())
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
    );
    assert!(
        checked.status.success(),
        "check examples/gateway.toml: stdout {out:?} stderr {err:?}"
    );
    assert_eq!(out.trim(), "ok", "stdout of a successful check");
}

#[test]
fn check_accepts_a_minimal_config() {
    let path = write_temp(
        &config(
            "",
            &(upstream_toml("u", &[closed_port()], "")
                + &route_toml("r", "u", "path_prefix = \"/\"")),
        ),
        "toml",
    );
    let (status, out, err) = check(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stdout {out:?} stderr {err:?}"
    );
    assert_eq!(out.trim(), "ok");
}

/// Finds the error line for `line` and checks its `FILE:LINE:COL: KEY.PATH: message` shape.
fn find_error<'a>(
    stderr: &'a str,
    file: &str,
    line: usize,
    path_part: &str,
    msg_part: &str,
) -> Result<&'a str, String> {
    let prefix = format!("{file}:{line}:");
    let l = stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .ok_or_else(|| format!("no error line starting with {prefix:?}"))?;
    let rest = &l[prefix.len()..];
    let (col, rest) = rest
        .split_once(": ")
        .ok_or_else(|| format!("no ': ' after the column in {l:?}"))?;
    let col: usize = col
        .parse()
        .map_err(|_| format!("column {col:?} is not a number in {l:?}"))?;
    if col == 0 {
        return Err(format!("column must be 1-based in {l:?}"));
    }
    let (key, msg) = rest
        .split_once(": ")
        .ok_or_else(|| format!("no 'KEY.PATH: message' in {l:?}"))?;
    if !key.contains(path_part) || key.contains(' ') {
        return Err(format!(
            "key path {key:?} should contain {path_part:?} in {l:?}"
        ));
    }
    if !msg.contains(msg_part) || msg.trim().is_empty() {
        return Err(format!(
            "message {msg:?} should contain {msg_part:?} in {l:?}"
        ));
    }
    Ok(l)
}

#[test]
fn check_reports_every_error_with_position() {
    let path = write_temp(BROKEN, "toml");
    let file = path.display().to_string();
    let (status, out, err) = check(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "check of a broken config must exit 1; stderr {err:?}"
    );
    assert!(!out.contains("ok"), "stdout of a failed check: {out:?}");
    let problems: Vec<String> = BROKEN_ERRORS
        .iter()
        .filter_map(|(line, key, msg)| find_error(&err, &file, *line, key, msg).err())
        .collect();
    assert!(
        problems.is_empty(),
        "all 3 errors must be reported at once:\n{}\n--- stderr ---\n{err}",
        problems.join("\n")
    );
    let route_line = find_error(&err, &file, 16, ".upstream", "").unwrap();
    assert!(
        route_line.contains("route["),
        "dangling reference reported under route[N]: {route_line:?}"
    );
}

#[test]
fn run_with_bad_config_never_listens() {
    let path = write_temp(BROKEN, "toml");
    let path_s = path.display().to_string();
    for_each_driver(|driver| {
        let port = closed_port();
        let listen = port.to_string();
        let args = [
            "run",
            "--config",
            &path_s,
            "--listen",
            &listen,
            "--workers",
            "1",
            "--no-pin",
            "--driver",
            driver,
        ];
        let (status, _out, err) = run_cli(&args, secs(10));
        let status = status.unwrap_or_else(|| {
            panic!("[{driver}] run with a broken config was still running after 10 s")
        });
        assert!(
            !status.success(),
            "[{driver}] run with a broken config exited {status:?}"
        );
        assert!(
            !err.contains("coregate: ready"),
            "[{driver}] printed a ready line: {err}"
        );
        assert!(
            err.contains("listn"),
            "[{driver}] run must report the config errors too: {err}"
        );
        assert!(
            std::net::TcpStream::connect(port).is_err(),
            "[{driver}] something listens on {port}"
        );
    });
    let _ = std::fs::remove_file(&path);
}

/// A listener standing for another process on an address the config names.
fn taken_addr() -> (std::net::TcpListener, std::net::SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A file that validates, but that `run` could not start with: a listen address another process
/// holds, an admin address that is not this host's, and a log directory that does not exist.
fn unrunnable(taken: std::net::SocketAddr) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0", "{taken}"]

[admin]
listen = "203.0.113.7:9901"

[access_log]
sink = "file"
path = "no-such-dir/access.log"

[[upstream]]
name = "u"
endpoints = ["127.0.0.1:9001"]
"#
    )
}

#[test]
fn check_reports_what_run_would_fail_on() {
    let (_other, taken) = taken_addr();
    let path = write_temp(&unrunnable(taken), "toml");
    let file = path.display().to_string();
    let (status, out, err) = check(&path);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "stderr {err:?}");
    assert!(!out.contains("ok"), "stdout {out:?}");
    let expected: &[(usize, &str, String)] = &[
        (
            2,
            "server.listen[1]",
            format!("{taken} is already in use by another process"),
        ),
        (
            5,
            "admin.listen",
            "203.0.113.7:9901 is not an address of this host".into(),
        ),
        (
            9,
            "access_log.path",
            "no-such-dir: No such file or directory".into(),
        ),
    ];
    let problems: Vec<String> = expected
        .iter()
        .filter_map(|(line, key, msg)| find_error(&err, &file, *line, key, msg).err())
        .collect();
    assert!(
        problems.is_empty(),
        "{}\n--- stderr ---\n{err}",
        problems.join("\n")
    );
    assert_eq!(err.lines().count(), 3, "exactly these errors: {err}");
    // The check itself created nothing and bound nothing.
    assert!(!path.with_file_name("no-such-dir").exists());

    // The file meant for the gateway already running there: addresses are not probed.
    let (status, _out, err) = run_cli(&["check", "-c", &file, "--no-bind-check"], secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    assert!(
        err.contains("access_log.path") && !err.contains("listen"),
        "{err}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn check_names_unreadable_key_files() {
    let text = r#"[[auth]]
name = "jwt"
type = "jwt"
algorithms = ["RS256"]
public_key_files = ["keys/missing.pem"]
"#;
    let path = write_temp(text, "toml");
    let file = path.display().to_string();
    let (status, _out, err) = check(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "stderr {err:?}");
    find_error(
        &err,
        &file,
        5,
        "auth[0].public_key_files[0]",
        "cannot read keys/missing.pem",
    )
    .unwrap_or_else(|e| panic!("{e}\n--- stderr ---\n{err}"));
}

#[test]
fn check_accepts_a_runnable_file_with_a_new_log_file() {
    let dir = temp_path("d");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [access_log]\nsink = \"file\"\npath = \"logs/access.log\"\n",
    )
    .unwrap();
    let (status, out, err) = check(&path);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "stderr {err:?}");
    assert_eq!(out.trim(), "ok");
    assert!(
        !dir.join("logs/access.log").exists(),
        "check must not create the log"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example's secrets, as its header documents them.
const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("COREGATE_JWT_SECRET", "dev-only-jwt-secret"),
    ("COREGATE_BETA_KEY", "dev-only-beta-key"),
    ("COREGATE_IDP_CLIENT_SECRET", "dev-only-client-secret"),
    ("COREGATE_REDIS_PASSWORD", "dev-only"),
];

/// Spawns the binary with `args` and `env`; returns it with its `coregate: ready` line (None when
/// it exited or did not get ready in time) and every stderr line so far.
fn spawn_ready(
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, Option<String>, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let (mut ready, mut seen) = (None, String::new());
    let until = deadline(READY_TIMEOUT);
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("coregate: ready") => {
                ready = Some(line);
                break;
            }
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => break,
        }
    }
    (child, ready, seen)
}

/// `admin=ADDR` of a ready line.
fn ready_admin(line: &str) -> Option<std::net::SocketAddr> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix("admin="))
        .and_then(|a| a.parse().ok())
}

/// examples/gateway.toml (with its key, fallback and schema files) passes a full `check` and starts with `run` on a
/// host that has only what its header says to export: no /var/log, no identity provider, no
/// Redis. Only its fixed ports are made ephemeral, so this never collides with anything.
#[test]
fn example_runs_on_a_fresh_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = temp_path("example");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    for f in ["jwt-public.pem", "jwks.json", "api-keys.toml"] {
        std::fs::copy(root.join("keys").join(f), dir.join("keys").join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("fallbacks")).unwrap();
    let fallback = "fallbacks/orders.json";
    std::fs::copy(root.join(fallback), dir.join(fallback)).unwrap();
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    let schema = "schemas/order.json";
    std::fs::copy(root.join(schema), dir.join(schema)).unwrap();
    let text = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    let text = text
        .replace(
            "listen = [\"127.0.0.1:8080\", \"127.0.0.1:8081\"]",
            "listen = \"127.0.0.1:0\"",
        )
        .replace("listen = \"127.0.0.1:9901\"", "listen = \"127.0.0.1:0\"");
    assert_eq!(text.matches("127.0.0.1:0").count(), 2, "ports replaced");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let file = path.display().to_string();

    let (status, out, err) = run_cli(&["check", "-c", &file], secs(30));
    assert!(
        err.contains("COREGATE_JWT_SECRET is not set"),
        "without the documented variables, check names them: {err}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{out}");
    let mut cmd = std::process::Command::new(bin());
    let checked = cmd
        .args(["check", "-c", &file])
        .envs(EXAMPLE_ENV.iter().copied())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "full check (files, addresses): {}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let args = [
        "run",
        "-c",
        &file,
        "--workers",
        "1",
        "--no-pin",
        "--driver",
        "epoll",
    ];
    let (mut child, ready, seen) = spawn_ready(&args, EXAMPLE_ENV);
    let admin = ready.as_deref().and_then(ready_admin);
    let listen: Option<std::net::SocketAddr> = ready.as_deref().and_then(|l| {
        l.split_whitespace()
            .find_map(|t| t.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
    });
    let health = admin.map(|a| get(a, "/healthz", "admin").status);
    let internal = listen.map(|a| get(a, "/internal/x", "example.test").status);
    let _ = child.kill();
    let _ = child.wait();
    let log_created = dir.join("access.log").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ready.is_some(), "run did not get ready; stderr:\n{seen}");
    assert_eq!(health, Some(200), "/healthz");
    assert_eq!(internal, Some(401), "an auth route without a token");
    assert!(log_created, "the access log is created next to the file");
}

#[test]
fn demo_takes_an_admin_address() {
    let args = [
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-pin",
        "--driver",
        "epoll",
    ];
    let (mut child, ready, seen) = spawn_ready(&args, &[]);
    let admin = ready.as_deref().and_then(ready_admin);
    let health = admin.map(|a| get(a, "/healthz", "admin").status);
    let _ = child.kill();
    let _ = child.wait();
    let admin = admin.unwrap_or_else(|| panic!("no admin address in {ready:?}; stderr:\n{seen}"));
    assert_ne!(admin.port(), 0, "the ready line names the bound port");
    assert_ne!(admin.port(), 9901, "--admin replaced the built-in address");
    assert_eq!(health, Some(200), "GET /healthz on the demo's admin");
}
