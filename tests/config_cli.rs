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
    let (status, out, err) = check(&example);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
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
