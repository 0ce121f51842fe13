//! `coregate tune`'s checks against fake `/proc` and `/sys` trees: a well-tuned host passes every
//! check, and each problem is found with its fix.

use super::host::{Host, Limit};
use super::*;
use crate::tls::testcerts::TempDir;

const UNLIMITED: Limit = Limit {
    soft: None,
    hard: None,
};

/// A 4-CPU host (two cores with two threads each) tuned as `tuning/` recommends.
fn good_tree() -> TempDir {
    let d = TempDir::new("tune");
    let files = [
        ("proc/sys/kernel/osrelease", "6.8.0-45-generic"),
        ("proc/sys/kernel/io_uring_disabled", "0"),
        ("proc/self/status", "Name:\tcoregate\nSeccomp:\t0\n"),
        ("proc/sys/fs/file-max", "9223372036854775807"),
        ("proc/sys/fs/nr_open", "1048576"),
        ("proc/sys/net/core/somaxconn", "4096"),
        ("proc/sys/net/ipv4/tcp_max_syn_backlog", "8192"),
        ("proc/sys/net/ipv4/ip_local_port_range", "1024\t65535"),
        ("proc/sys/net/ipv4/tcp_tw_reuse", "1"),
        ("proc/sys/net/core/netdev_max_backlog", "16384"),
        (
            "proc/net/softnet_stat",
            "0000ffff 00000000 00000001\n0000ffff 00000000 00000000\n",
        ),
        (
            "sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never",
        ),
        ("sys/devices/system/cpu/online", "0-3"),
        ("sys/devices/system/cpu/isolated", ""),
        (
            "sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
            "0,2",
        ),
        (
            "sys/devices/system/cpu/cpu2/topology/thread_siblings_list",
            "0,2",
        ),
        (
            "sys/devices/system/cpu/cpu1/topology/thread_siblings_list",
            "1,3",
        ),
        (
            "sys/devices/system/cpu/cpu3/topology/thread_siblings_list",
            "1,3",
        ),
        ("sys/class/net/lo/mtu", "65536"),
        ("sys/class/net/eth0/device/vendor", "0x8086"),
        ("sys/class/net/eth0/queues/rx-0/x", ""),
        ("sys/class/net/eth0/queues/rx-1/x", ""),
        ("sys/class/net/eth0/queues/tx-0/x", ""),
        ("sys/class/net/eth0/device/msi_irqs/40", "msix"),
        ("sys/class/net/eth0/device/msi_irqs/41", "msix"),
        ("proc/irq/40/smp_affinity_list", "2-3"),
        ("proc/irq/41/smp_affinity_list", "3"),
    ];
    for (p, v) in files {
        d.write(p, v);
    }
    for c in 0..4 {
        d.write(
            &format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
            "performance",
        );
    }
    d
}

fn host(d: &TempDir) -> Host {
    Host::at(
        &d.0,
        UNLIMITED,
        UNLIMITED,
        Ok("coop_taskrun,defer_taskrun".into()),
    )
}

/// Two workers on CPUs 0 and 1 (one per core), 10,000 connections, no config.
fn plan2(h: &Host, cpus: &str) -> Plan {
    let args = TuneArgs {
        json: false,
        config: None,
        workers: Some(2),
        cpus: Some(crate::cli::parse_cpus(cpus).unwrap()),
        connections: 10_000,
        root: None,
    };
    plan(&args, None, h)
}

fn by_name<'a>(v: &'a [Check], name: &str) -> &'a Check {
    v.iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn a_tuned_host_passes_every_check() {
    let d = good_tree();
    let h = host(&d);
    let found = inspect(&h, &plan2(&h, "0,1"));
    let bad: Vec<_> = found.iter().filter(|c| !c.ok).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let names: Vec<&str> = found.iter().map(|c| c.check).collect();
    assert_eq!(
        names,
        [
            "io_uring",
            "memlock",
            "open_files",
            "file_max",
            "somaxconn",
            "tcp_max_syn_backlog",
            "ephemeral_ports",
            "tcp_tw_reuse",
            "netdev_max_backlog",
            "transparent_hugepages",
            "smt_siblings",
            "isolated_cpus",
            "cpu_governor",
            "nic_irqs"
        ]
    );
    assert!(found.iter().all(|c| c.fix.is_empty() && !c.why.is_empty()));
    assert!(by_name(&found, "nic_irqs")
        .found
        .contains("eth0: 2 rx queue(s), 2 IRQ(s), 0 on worker CPUs"));
}

#[test]
fn an_untuned_host_gets_each_fix() {
    let d = good_tree();
    for (p, v) in [
        ("proc/sys/net/core/somaxconn", "128"),
        ("proc/sys/net/ipv4/tcp_max_syn_backlog", "512"),
        ("proc/sys/fs/nr_open", "65536"),
        ("proc/sys/net/ipv4/ip_local_port_range", "32768\t60999"),
        ("proc/sys/net/ipv4/tcp_tw_reuse", "2"),
        ("proc/sys/net/core/netdev_max_backlog", "1000"),
        (
            "proc/net/softnet_stat",
            "0000ffff 00000014 0\n0000ffff 00000242 0\n",
        ),
        (
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never",
        ),
        (
            "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
            "powersave",
        ),
        ("proc/irq/40/smp_affinity_list", "0-3"),
    ] {
        d.write(p, v);
    }
    let h = Host::at(
        &d.0,
        Limit {
            soft: Some(1024),
            hard: Some(4096),
        },
        UNLIMITED,
        Ok("coop_taskrun,defer_taskrun".into()),
    );
    // 40,000 connections: more than the 28,232 ports of the default range
    let mut p = plan2(&h, "0,2");
    p.connections = 40_000;
    let found = inspect(&h, &p);
    let fix = |n: &str| {
        let c = by_name(&found, n);
        assert!(!c.ok, "{n} should fail: {c:?}");
        c.fix.clone()
    };
    assert_eq!(
        fix("somaxconn"),
        "sysctl -w net.core.somaxconn=4096 (or: sudo tuning/apply.sh sysctl)"
    );
    assert!(fix("tcp_max_syn_backlog").starts_with("sysctl -w net.ipv4.tcp_max_syn_backlog=4096"));
    assert!(
        fix("ephemeral_ports").starts_with("sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"")
    );
    assert!(by_name(&found, "ephemeral_ports")
        .found
        .contains("28232 ports; up to 40000"));
    assert!(fix("tcp_tw_reuse").starts_with("sysctl -w net.ipv4.tcp_tw_reuse=1"));
    assert!(by_name(&found, "netdev_max_backlog")
        .found
        .contains("598 packets dropped"));
    assert!(fix("netdev_max_backlog").starts_with("sysctl -w net.core.netdev_max_backlog=16384"));
    assert!(fix("transparent_hugepages").contains("tuning/apply.sh thp"));
    // 80,000 + 1,024 descriptors, above the hard limit too
    let f = fix("open_files");
    assert!(
        f.starts_with("raise the hard limit: LimitNOFILE=131072"),
        "{f}"
    );
    assert!(f.ends_with("first sysctl -w fs.nr_open=131072"), "{f}");
    // CPUs 0 and 2 are one core's two threads: the fix names one thread per core
    assert_eq!(
        fix("smt_siblings"),
        "coregate run --workers 2 --cpus 0-1 (one thread per core)"
    );
    assert_eq!(by_name(&found, "cpu_governor").found, "cpu2=powersave");
    // IRQ 40 may run on every CPU, workers' included; CPUs 1 and 3 are spare
    assert_eq!(
        fix("nic_irqs"),
        "sudo tuning/irq-affinity.sh eth0 1,3 (stop irqbalance first)"
    );
    assert!(by_name(&found, "io_uring").ok);
    assert!(by_name(&found, "file_max").ok);
}

#[test]
fn io_uring_failures_name_their_cause() {
    let d = good_tree();
    let err = || Err::<String, String>("Operation not permitted".into());
    let check = |d: &TempDir| {
        let h = Host::at(&d.0, UNLIMITED, UNLIMITED, err());
        let found = inspect(&h, &plan2(&h, "0,1"));
        by_name(&found, "io_uring").clone()
    };
    d.write("proc/self/status", "Seccomp:\t2\n");
    let c = check(&d);
    assert!(!c.ok);
    assert!(c.found.starts_with("unavailable: Operation not permitted"));
    assert!(c.fix.contains("seccomp profile"), "{}", c.fix);
    d.write("proc/sys/kernel/io_uring_disabled", "2");
    assert!(check(&d)
        .fix
        .starts_with("sysctl -w kernel.io_uring_disabled=0"));
    d.write("proc/sys/kernel/io_uring_disabled", "0");
    d.write("proc/self/status", "Seccomp:\t0\n");
    d.write("proc/sys/kernel/osrelease", "5.4.0-150-generic");
    assert!(check(&d).fix.starts_with("upgrade to Linux 5.11"));
}

#[test]
fn memlock_matters_before_5_12_only() {
    let d = good_tree();
    let small = Limit {
        soft: Some(64 << 10),
        hard: Some(64 << 10),
    };
    let memlock = |d: &TempDir| {
        let h = Host::at(&d.0, UNLIMITED, small, Ok("coop_taskrun".into()));
        let found = inspect(&h, &plan2(&h, "0,1"));
        by_name(&found, "memlock").clone()
    };
    assert!(memlock(&d).ok);
    d.write("proc/sys/kernel/osrelease", "5.10.0");
    let c = memlock(&d);
    assert!(!c.ok);
    assert!(c.fix.starts_with("ulimit -l unlimited"));
}

#[test]
fn isolated_cpus_and_plans() {
    let d = good_tree();
    d.write("sys/devices/system/cpu/isolated", "2-3");
    let h = host(&d);
    let found = inspect(&h, &plan2(&h, "0,1"));
    let c = by_name(&found, "isolated_cpus");
    assert!(!c.ok);
    assert_eq!(c.fix, "coregate run --workers 2 --cpus 2-3");
    let found = inspect(&h, &plan2(&h, "2,3"));
    assert!(by_name(&found, "isolated_cpus").ok);

    // no flags: one worker per online CPU, in order; a config's upstream pools count
    let args = TuneArgs {
        json: false,
        config: None,
        workers: None,
        cpus: None,
        connections: 100,
        root: None,
    };
    let p = plan(&args, None, &h);
    assert_eq!((p.workers, p.cpus.clone()), (4, vec![0, 1, 2, 3]));
    let cfg = crate::config::parse_str(
        "[server]\nworkers = 3\n[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n\
         max_idle_per_endpoint = 100\n[[route]]\npath_prefix = \"/\"\nupstream = \"u\"\n",
        "tune.toml",
    )
    .unwrap();
    let p = plan(&args, Some(&cfg), &h);
    assert_eq!(
        (p.workers, p.upstream_endpoints, p.idle_per_endpoint),
        (3, 2, 100)
    );
    assert_eq!(p.cpus, vec![0, 1, 2]);
}

#[test]
fn text_and_json_reports() {
    let d = good_tree();
    d.write("proc/sys/net/core/somaxconn", "128");
    let h = host(&d);
    let p = plan2(&h, "0,1");
    let found = inspect(&h, &p);
    let text = render(&found, &p);
    assert!(text.starts_with(
        "coregate tune: 2 workers on CPUs 0-1, 10000 connections: 14 checks, 1 to fix\n"
    ));
    assert!(text.contains("\nFIX  somaxconn              net.core.somaxconn = 128, below 4096\n     why: coregate asks"));
    assert!(text.contains("     fix: sysctl -w net.core.somaxconn=4096"));
    let json: serde_json::Value = serde_json::to_value(&found).unwrap();
    let first = json[0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["check", "fix", "found", "ok"]);
}
