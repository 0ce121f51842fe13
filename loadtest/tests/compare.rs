//! `coregate-load compare` end to end: the real binary runs coregate and the relay floor (and nginx
//! when installed) for one short round, closed loop and open loop at 200 req/s, and the JSON it
//! writes holds a measured run for each with requests and CPU time per request. Bad input exits 2.
//! Needs the coregate binary (target/debug/coregate, built with the workspace); without it the
//! end-to-end test says so loudly and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coregate-load"))
}

/// coregate next to coregate-load (same target dir), else <workspace>/target/debug/coregate;
/// `COREGATE_BIN` overrides.
fn coregate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COREGATE_BIN") {
        return Some(PathBuf::from(p));
    }
    [
        Path::new(env!("CARGO_BIN_EXE_coregate-load")).with_file_name("coregate"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/coregate"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn compare_coregate_relay_and_maybe_nginx() {
    let Some(coregate) = coregate() else {
        eprintln!(
            "\n\n*** SKIPPING compare end-to-end test: no coregate binary (build the workspace \
             first: `cargo build`, or set COREGATE_BIN) ***\n\n"
        );
        return;
    };
    let json = std::env::temp_dir().join(format!("compare-test-{}.json", std::process::id()));
    let out = bin()
        .arg("compare")
        .arg("--coregate")
        .arg(&coregate)
        .args(["--rounds", "1", "--duration", "1s", "--warmup", "0s"])
        .args(["--connections", "8", "--body-sizes", "60", "--rates", "200"])
        .args(["--only", "coregate,relay,nginx", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let raw = std::fs::read_to_string(&json).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let _ = std::fs::remove_file(&json);
    let runs = doc["runs"].as_array().expect("runs");
    for proxy in ["coregate", "relay"] {
        for (mode, rate) in [("closed", None), ("open", Some(200))] {
            let r = runs
                .iter()
                .find(|r| r["proxy"] == proxy && r["mode"] == mode && r["rate"].as_u64() == rate)
                .unwrap_or_else(|| panic!("no {proxy} {mode} run in {doc:#}\n{all}"));
            assert_eq!(r["body_size"], 60);
            assert_eq!(r["connections"], 8);
            assert_eq!(r["round"], 1);
            assert!(r["result"]["requests"].as_u64().unwrap() > 0, "{r:#}");
            assert!(r["cpu_us_per_req"].as_f64().unwrap() > 0.0, "{r:#}");
            // Compact: the histogram is one encoded string, no per-second timeline.
            assert!(r["result"]["histogram"].is_string(), "{r:#}");
            assert!(r["result"].get("timeline").is_none(), "{r:#}");
        }
    }
    assert!(runs.iter().any(|r| r["driver"] == "uring"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let nginx_ran = runs.iter().any(|r| r["proxy"] == "nginx");
    assert!(
        nginx_ran || stdout.contains("skipping nginx"),
        "nginx neither ran nor was reported skipped\n{all}"
    );
    // One table per (body size, connections, mode), with a row per proxy, and medians in the JSON.
    assert!(
        stdout.contains("body 60 B, 8 connections, closed loop"),
        "{all}"
    );
    assert!(
        stdout.contains("body 60 B, 8 connections, open loop at 200 req/s"),
        "{all}"
    );
    assert!(
        stdout.contains("coregate-uring") && stdout.contains("relay"),
        "{all}"
    );
    let medians = doc["medians"].as_array().expect("medians");
    assert_eq!(doc["histogram_encoding"], "hdrhistogram-v2-deflate-base64");
    // One line per run and per median, plus the head and three bracket lines.
    assert_eq!(raw.lines().count(), runs.len() + medians.len() + 4, "{raw}");
    let expect = if nginx_ran { 6 } else { 4 };
    assert_eq!(medians.len(), expect, "{doc:#}");
}

#[test]
fn bad_input_exits_2() {
    let cases: [(&[&str], &str); 5] = [
        (&["--only", "coregate,envoy"], "envoy"),
        (
            &["--coregate", "/nonexistent/coregate"],
            "coregate binary not found",
        ),
        (&["--only", "relay", "--connections", ""], "connections"),
        (&["--only", "relay", "--body-sizes", "60,big"], "body-sizes"),
        (&["--only", "relay", "--drivers", "kqueue"], "kqueue"),
    ];
    for (args, want) in cases {
        let out = bin().arg("compare").args(args).output().unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{args:?}: {all}"
        );
    }
}
