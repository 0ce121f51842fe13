//! The host-tuning scripts (tuning/apply.sh, tuning/irq-affinity.sh) against a fake /proc and /sys
//! tree under `ROOT`: apply changes exactly what `coregate tune` recommends (raising, never
//! lowering), saves every original to `STATE` (the first save wins, so applying twice is safe),
//! and `--revert` puts every original back and removes STATE. No privileges needed: the scripts'
//! root check only applies when ROOT is empty, which these tests never do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory removed on drop (also when an assertion fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("coregate-tuning-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn have_bash() -> bool {
    let ok = Command::new("bash")
        .args(["-c", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: no `bash` on this machine");
    }
    ok
}

/// Runs `bash tuning/SCRIPT ARGS...` with ROOT and STATE set; panics (showing the output) unless
/// it exits 0. Returns stdout.
fn run(script: &str, args: &[&str], root: &Path, state: &Path) -> String {
    let out = run_raw(script, args, root, state);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn run_raw(script: &str, args: &[&str], root: &Path, state: &Path) -> Output {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(dir.join("tuning").join(script))
        .args(args)
        .current_dir(dir)
        .env("ROOT", root)
        .env("STATE", state)
        .output()
        .unwrap()
}

fn put(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, format!("{content}\n")).unwrap();
}

fn get(root: &Path, rel: &str) -> String {
    let text = fs::read_to_string(root.join(rel)).unwrap();
    text.strip_suffix('\n').unwrap_or(&text).to_string()
}

const SOMAXCONN: &str = "proc/sys/net/core/somaxconn";
const SYN_BACKLOG: &str = "proc/sys/net/ipv4/tcp_max_syn_backlog";
const PORT_RANGE: &str = "proc/sys/net/ipv4/ip_local_port_range";
const TW_REUSE: &str = "proc/sys/net/ipv4/tcp_tw_reuse";
const NETDEV_BACKLOG: &str = "proc/sys/net/core/netdev_max_backlog";
const FILE_MAX: &str = "proc/sys/fs/file-max";
const THP: &str = "sys/kernel/mm/transparent_hugepage/enabled";
const GOV0: &str = "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor";
const GOV1: &str = "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor";
const IRQ40: &str = "proc/irq/40/smp_affinity_list";
const IRQ41: &str = "proc/irq/41/smp_affinity_list";
const IRQ42: &str = "proc/irq/42/smp_affinity_list";

/// (file, original content): everything the scripts may touch, as a stock host has it.
const ORIGINALS: &[(&str, &str)] = &[
    (SOMAXCONN, "128"),
    (SYN_BACKLOG, "100000"), // above the recommended 8192: must be kept
    (PORT_RANGE, "32768\t60999"),
    (TW_REUSE, "2"),
    (NETDEV_BACKLOG, "1000"),
    (FILE_MAX, "100"),
    (GOV0, "powersave"),
    (GOV1, "powersave"),
    (IRQ40, "0-3"),
    (IRQ41, "0-3"),
    (IRQ42, "0-3"),
];

#[test]
fn apply_irq_affinity_and_revert_round_trip() {
    if !have_bash() {
        return;
    }
    let scratch = Scratch::new("roundtrip");
    let root = scratch.0.join("root");
    let state = scratch.0.join("var/lib/coregate/tuning.state");
    for (rel, content) in ORIGINALS {
        put(&root, rel, content);
    }
    put(&root, THP, "[always] madvise never");
    put(
        &root,
        "proc/interrupts",
        "           CPU0       CPU1\n  40:   1200   0  PCI-MSI 524288-edge  eth0-TxRx-0\n  \
         41:   1100   0  PCI-MSI 524289-edge  eth0-TxRx-1\n  42:    900   0  PCI-MSI 1048576-edge  nvme0q0",
    );

    // Apply everything.
    let out = run("apply.sh", &["all"], &root, &state);
    for line in [
        "changed net.core.somaxconn: 128 -> 4096",
        "kept net.ipv4.tcp_max_syn_backlog: 100000",
        "changed net.ipv4.ip_local_port_range: 32768 60999 -> 1024 65535",
        "changed net.ipv4.tcp_tw_reuse: 2 -> 1",
        "changed /sys/kernel/mm/transparent_hugepage/enabled: always -> madvise",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let applied: &[(&str, &str)] = &[
        (SOMAXCONN, "4096"),
        (SYN_BACKLOG, "100000"),
        (PORT_RANGE, "1024 65535"),
        (TW_REUSE, "1"),
        (NETDEV_BACKLOG, "16384"),
        (FILE_MAX, "2097152"),
        (THP, "madvise"),
        (GOV0, "performance"),
        (GOV1, "performance"),
    ];
    for (rel, want) in applied {
        assert_eq!(get(&root, rel), *want, "{rel} after apply");
    }
    let saved = fs::read_to_string(&state).unwrap();
    for line in [
        "sysctl net.core.somaxconn 128\n",
        "sysctl net.ipv4.ip_local_port_range 32768\t60999\n",
        "file /sys/kernel/mm/transparent_hugepage/enabled always\n",
        "file /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor powersave\n",
    ] {
        assert!(saved.contains(line), "no {line:?} in STATE:\n{saved}");
    }
    assert!(
        !saved.contains("tcp_max_syn_backlog"),
        "a kept key was saved:\n{saved}"
    );

    // Applying again changes nothing and keeps the originals, even for a value that drifted in
    // between (somaxconn 64 is raised again, but 128 stays the value to revert to).
    let out = run("apply.sh", &[], &root, &state);
    assert!(out.contains("kept net.ipv4.tcp_tw_reuse: 1"), "{out}");
    assert_eq!(
        fs::read_to_string(&state).unwrap(),
        saved,
        "second apply rewrote STATE"
    );
    put(&root, SOMAXCONN, "64");
    let out = run("apply.sh", &["sysctl"], &root, &state);
    assert!(
        out.contains("changed net.core.somaxconn: 64 -> 4096"),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(&state).unwrap(),
        saved,
        "a later save replaced an original"
    );

    // IRQs of eth0 (40, 41) pinned, the NVMe one (42) left alone; a second run keeps the originals.
    let out = run("irq-affinity.sh", &["eth0", "1"], &root, &state);
    assert!(
        out.contains("irq 40 -> cpus 1") && out.contains("irq 41 -> cpus 1"),
        "{out}"
    );
    run("irq-affinity.sh", &["eth0", "2"], &root, &state);
    assert_eq!(get(&root, IRQ40), "2");
    assert_eq!(get(&root, IRQ41), "2");
    assert_eq!(get(&root, IRQ42), "0-3");
    let with_irqs = fs::read_to_string(&state).unwrap();
    assert!(with_irqs.starts_with(&saved), "{with_irqs}");
    assert_eq!(&with_irqs[saved.len()..], "irq 40 0-3\nirq 41 0-3\n");

    // irq-affinity.sh --revert: only the irq lines.
    run("irq-affinity.sh", &["--revert"], &root, &state);
    assert_eq!(get(&root, IRQ40), "0-3");
    assert_eq!(get(&root, IRQ41), "0-3");
    assert_eq!(get(&root, SOMAXCONN), "4096", "irq revert touched a sysctl");
    assert_eq!(fs::read_to_string(&state).unwrap(), saved);

    // apply.sh --revert thp: only that line.
    run("apply.sh", &["--revert", "thp"], &root, &state);
    assert_eq!(get(&root, THP), "always"); // the kernel would show "[always] madvise never"
    assert_eq!(get(&root, GOV0), "performance");

    // apply.sh --revert: every original back, STATE gone; a second revert has nothing to do.
    let out = run("apply.sh", &["--revert"], &root, &state);
    assert!(out.contains("restored net.core.somaxconn: 128"), "{out}");
    for (rel, original) in ORIGINALS {
        assert_eq!(get(&root, rel), *original, "{rel} after revert");
    }
    assert_eq!(get(&root, THP), "always");
    assert!(!state.exists(), "STATE still there after --revert");
    let out = run("apply.sh", &["--revert"], &root, &state);
    assert!(out.contains("nothing to revert"), "{out}");
}

#[test]
fn missing_files_are_skipped() {
    if !have_bash() {
        return;
    }
    let scratch = Scratch::new("empty");
    let root = scratch.0.join("root"); // a host without any of the files (a container, say)
    let state = scratch.0.join("tuning.state");
    put(&root, SOMAXCONN, "8192"); // already above the recommendation
    let out = run("apply.sh", &[], &root, &state);
    assert!(out.contains("kept net.core.somaxconn: 8192"), "{out}");
    assert!(out.contains("skipped fs.file-max: "), "{out}");
    assert!(
        out.contains("no cpufreq here (virtual machine or fixed frequency): nothing to do"),
        "{out}"
    );
    assert_eq!(get(&root, SOMAXCONN), "8192");
    assert!(!state.exists(), "nothing changed, yet STATE was written");
    let out = run("apply.sh", &["--revert"], &root, &state);
    assert!(out.contains("nothing to revert"), "{out}");

    // irq-affinity.sh with no IRQ for the interface: exit 1 with a message, nothing saved.
    put(
        &root,
        "proc/interrupts",
        "           CPU0\n  42:  900  PCI-MSI nvme0q0",
    );
    let out = run_raw("irq-affinity.sh", &["eth0", "1"], &root, &state);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no IRQs found for eth0"));
    assert!(!state.exists());
}
