//! The CPU and NIC checks of `coregate tune`: the worker CPUs against SMT siblings and isolated
//! CPUs, their frequency governor, and where the network card's interrupts land. Read from
//! `/sys/devices/system/cpu`, `/sys/class/net` and `/proc/irq`, against the plan's worker CPUs.

use super::host::{format_cpu_list, parse_cpu_list, Host};
use super::{Check, Plan};

pub fn all(h: &Host, p: &Plan) -> Vec<Check> {
    vec![smt(h, p), isolated(h, p), governor(h, p), nic_irqs(h, p)]
}

/// The SMT siblings of a CPU (itself included).
fn siblings(h: &Host, cpu: usize) -> Vec<usize> {
    h.read(&format!(
        "/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
    ))
    .and_then(|s| parse_cpu_list(&s))
    .unwrap_or_else(|| vec![cpu])
}

fn smt(h: &Host, p: &Plan) -> Check {
    let why = "two workers on SMT siblings (hyper-threads of one core) share its execution units \
               and caches, so each runs well below a core's speed; one worker per physical core \
               scales better";
    let cpus = p.cpus_label();
    let mut shared = Vec::new();
    for (i, &a) in p.cpus.iter().enumerate() {
        for &b in &p.cpus[i + 1..] {
            if a != b && siblings(h, a).contains(&b) {
                shared.push(format!("{a}+{b}"));
            }
        }
    }
    if shared.is_empty() {
        return Check::ok(
            "smt_siblings",
            format!("worker CPUs {cpus}: no two are SMT siblings"),
            why,
        );
    }
    // one thread per core, lowest first, as many as there are workers
    let mut pick = Vec::new();
    for c in h.online_cpus() {
        if !pick.iter().any(|&q| siblings(h, q).contains(&c)) {
            pick.push(c);
        }
    }
    pick.truncate(p.workers);
    Check::fix(
        "smt_siblings",
        format!(
            "worker CPUs {cpus}: siblings share a core ({})",
            shared.join(", ")
        ),
        why,
        format!(
            "coregate run --workers {} --cpus {} (one thread per core)",
            pick.len(),
            format_cpu_list(&pick)
        ),
    )
}

fn isolated(h: &Host, p: &Plan) -> Check {
    let why = "CPUs isolated from the scheduler (isolcpus=, nohz_full=) are meant for latency \
               work; workers outside them share their cores with everything else on the host";
    let iso = h
        .read("/sys/devices/system/cpu/isolated")
        .and_then(|s| parse_cpu_list(&s))
        .unwrap_or_default();
    if iso.is_empty() {
        return Check::ok("isolated_cpus", "no CPUs are isolated".into(), why);
    }
    let outside: Vec<usize> = p
        .cpus
        .iter()
        .copied()
        .filter(|c| !iso.contains(c))
        .collect();
    let found = format!(
        "isolated {}; worker CPUs {}",
        format_cpu_list(&iso),
        p.cpus_label()
    );
    if outside.is_empty() {
        return Check::ok("isolated_cpus", found, why);
    }
    Check::fix(
        "isolated_cpus",
        found,
        why,
        format!(
            "coregate run --workers {} --cpus {}",
            iso.len().min(p.workers.max(1)),
            format_cpu_list(&iso)
        ),
    )
}

fn governor(h: &Host, p: &Plan) -> Check {
    let why = "a power-saving governor lowers the clock between bursts, and each burst then runs \
               slow until it ramps up: higher and noisier latency";
    let mut slow = Vec::new();
    let mut seen = 0;
    for &c in &p.cpus {
        if let Some(g) = h.read(&format!(
            "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
        )) {
            seen += 1;
            if g != "performance" {
                slow.push(format!("cpu{c}={g}"));
            }
        }
    }
    if seen == 0 {
        return Check::ok(
            "cpu_governor",
            "no cpufreq (virtual machine or fixed frequency)".into(),
            why,
        );
    }
    if slow.is_empty() {
        return Check::ok(
            "cpu_governor",
            "performance on every worker CPU".into(),
            why,
        );
    }
    Check::fix(
        "cpu_governor",
        slow.join(", "),
        why,
        "cpupower frequency-set -g performance (or: sudo tuning/apply.sh governor)".into(),
    )
}

/// A NIC's interrupt numbers: its MSI vectors, else the `/proc/interrupts` lines naming it.
fn nic_irqs_of(h: &Host, nic: &str) -> Vec<u32> {
    let msi: Vec<u32> = h
        .list(&format!("/sys/class/net/{nic}/device/msi_irqs"))
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    if !msi.is_empty() {
        return msi;
    }
    h.read("/proc/interrupts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(nic))
        .filter_map(|l| l.split(':').next()?.trim().parse().ok())
        .collect()
}

fn nic_irqs(h: &Host, p: &Plan) -> Check {
    let why = "a NIC's interrupts and the packet processing they start run on the CPUs in their \
               affinity; on a worker's CPU they take its time in bursts (latency spikes), on \
               spare CPUs they do not";
    let nics: Vec<String> = h
        .list("/sys/class/net")
        .into_iter()
        .filter(|n| n != "lo" && h.exists(&format!("/sys/class/net/{n}/device")))
        .collect();
    if nics.is_empty() {
        return Check::ok("nic_irqs", "no physical network interface".into(), why);
    }
    let spare: Vec<usize> = h
        .online_cpus()
        .into_iter()
        .filter(|c| !p.cpus.contains(c))
        .collect();
    let mut found = Vec::new();
    let mut fixes = Vec::new();
    for nic in &nics {
        let queues = h
            .list(&format!("/sys/class/net/{nic}/queues"))
            .iter()
            .filter(|q| q.starts_with("rx-"))
            .count();
        let irqs = nic_irqs_of(h, nic);
        let on_workers: Vec<u32> = irqs
            .iter()
            .copied()
            .filter(|irq| {
                h.read(&format!("/proc/irq/{irq}/smp_affinity_list"))
                    .and_then(|s| parse_cpu_list(&s))
                    .is_some_and(|cpus| cpus.iter().any(|c| p.cpus.contains(c)))
            })
            .collect();
        found.push(format!(
            "{nic}: {queues} rx queue(s), {} IRQ(s), {} on worker CPUs",
            irqs.len(),
            on_workers.len()
        ));
        if !on_workers.is_empty() && !spare.is_empty() {
            fixes.push(format!(
                "sudo tuning/irq-affinity.sh {nic} {} (stop irqbalance first)",
                format_cpu_list(&spare)
            ));
        }
    }
    let mut found = found.join("; ");
    if fixes.is_empty() {
        if spare.is_empty() {
            found.push_str(" (every CPU runs a worker: leave one free with --cpus to move them)");
        }
        return Check::ok("nic_irqs", found, why);
    }
    Check::fix("nic_irqs", found, why, fixes.join("; "))
}
