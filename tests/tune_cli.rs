//! `coregate tune` as a user runs it: the real binary against a fake `/proc` and `/sys` tree
//! (`--root`), its JSON and text reports, and an exit status that says whether anything needs
//! changing. Limits and the io_uring probe are this host's, so the assertions that depend on them
//! read them from the report instead of assuming.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let d = std::env::temp_dir().join(format!("coregate-tune-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tree(d)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 2-CPU host tuned as `tuning/` recommends.
fn tuned(tag: &str) -> Tree {
    let t = Tree::new(tag);
    for (p, v) in [
        ("proc/sys/kernel/osrelease", "6.8.0"),
        ("proc/sys/kernel/io_uring_disabled", "0"),
        ("proc/self/status", "Seccomp:\t0\n"),
        ("proc/sys/fs/file-max", "9223372036854775807"),
        ("proc/sys/fs/nr_open", "1048576"),
        ("proc/sys/net/core/somaxconn", "4096"),
        ("proc/sys/net/ipv4/tcp_max_syn_backlog", "8192"),
        ("proc/sys/net/ipv4/ip_local_port_range", "1024\t65535"),
        ("proc/sys/net/ipv4/tcp_tw_reuse", "1"),
        ("proc/sys/net/core/netdev_max_backlog", "16384"),
        ("proc/net/softnet_stat", "00000001 00000000\n"),
        (
            "sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never",
        ),
        ("sys/devices/system/cpu/online", "0-1"),
    ] {
        t.write(p, v);
    }
    t
}

fn tune(root: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .arg("tune")
        .arg("--root")
        .arg(root)
        // few connections: this host's own file limit passes
        .args(["--connections", "10", "--workers", "2"])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn checks(json: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(json)
        .expect("a JSON array")
        .as_array()
        .unwrap()
        .clone()
}

fn find<'a>(v: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    v.iter().find(|c| c["check"] == name).unwrap()
}

#[test]
fn json_report_and_exit_status() {
    let t = tuned("good");
    let (code, out) = tune(&t.0, &["--json"]);
    let v = checks(&out);
    assert_eq!(v.len(), 14, "{out}");
    for c in &v {
        let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["check", "fix", "found", "ok"]);
        assert_eq!(c["ok"].as_bool().unwrap(), c["fix"] == "", "{c}");
    }
    // every file-based check passes on the tuned tree; io_uring and memlock are this host's
    let failing: Vec<&str> = v
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(
        failing.iter().all(|n| ["io_uring", "memlock"].contains(n)),
        "{failing:?}"
    );
    assert_eq!(code, Some(if failing.is_empty() { 0 } else { 1 }));

    // one untuned sysctl: that check fails with its fix, and the status says so
    t.write("proc/sys/net/core/somaxconn", "128");
    let (code, out) = tune(&t.0, &["--json"]);
    let v = checks(&out);
    let c = find(&v, "somaxconn");
    assert_eq!(c["ok"], false);
    assert_eq!(c["found"], "net.core.somaxconn = 128, below 4096");
    assert_eq!(
        c["fix"],
        "sysctl -w net.core.somaxconn=4096 (or: sudo tuning/apply.sh sysctl)"
    );
    assert_eq!(code, Some(1));
}

#[test]
fn text_report_says_what_why_and_fix() {
    let t = tuned("text");
    t.write(
        "sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never",
    );
    let (code, out) = tune(&t.0, &[]);
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("coregate tune: 2 workers on CPUs 0-1, 10 connections: 14 checks, "),
        "{out}"
    );
    let block = out
        .split("\n\n")
        .find(|b| b.contains("transparent_hugepages"))
        .unwrap();
    assert!(
        block.starts_with("FIX  transparent_hugepages  enabled = always\n     why: "),
        "{block}"
    );
    assert!(block.contains(
        "     fix: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (or: sudo tuning/apply.sh thp)"
    ));
    assert!(out.contains("ok   somaxconn              net.core.somaxconn = 4096\n"));
}

#[test]
fn a_config_sizes_the_limits_and_a_bad_one_is_refused() {
    let t = tuned("cfg");
    let cfg = t.0.join("gw.toml");
    std::fs::write(
        &cfg,
        "[server]\nworkers = 2\n[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n\
         max_idle_per_endpoint = 40000\n[[route]]\npath_prefix = \"/\"\nupstream = \"u\"\n",
    )
    .unwrap();
    // 2 workers x 40,000 idle connections to one endpoint: more than 64,512 ports
    let (code, out) = tune(&t.0, &["--json", "--config", cfg.to_str().unwrap()]);
    let v = checks(&out);
    let c = find(&v, "ephemeral_ports");
    assert_eq!(c["ok"], false, "{c}");
    assert_eq!(
        c["found"],
        "ip_local_port_range = 1024 65535: 64512 ports; up to 80010 connections to one endpoint"
    );
    assert_eq!(code, Some(1));

    std::fs::write(&cfg, "[server]\nworkers = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["tune", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.workers"));
}
