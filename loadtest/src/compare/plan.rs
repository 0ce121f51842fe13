//! Turning `compare`'s flags into a validated plan: list and CPU parsing, durations, the proxies to
//! run (with their labels) and how the load CPUs are split between the backend and the generator.
//! Everything here is pure so it can be unit-tested; bad input becomes an `Err(message)` (exit 2).

use std::path::PathBuf;

/// A proxy under test (or the relay floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// coregate with the given IO driver ("uring" or "epoll").
    Coregate(&'static str),
    /// coregate with a driver and extra command-line flags (`--variant`), to measure a setting
    /// on and off in the same run.
    CoregateWith(&'static str, &'static Variant),
    Nginx,
    Haproxy,
    /// `coregate-load relay`: a bare TCP relay, the CPU-per-request floor.
    Relay,
}

impl Proxy {
    /// The name used in `--only` and in the JSON `proxy` field.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Coregate(_) | Proxy::CoregateWith(..) => "coregate",
            Proxy::Nginx => "nginx",
            Proxy::Haproxy => "haproxy",
            Proxy::Relay => "relay",
        }
    }

    /// coregate's driver, `None` for the others.
    pub fn driver(self) -> Option<&'static str> {
        match self {
            Proxy::Coregate(d) | Proxy::CoregateWith(d, _) => Some(d),
            _ => None,
        }
    }

    /// The row label in tables and reports: "coregate-uring", "nginx", ...
    pub fn label(self) -> String {
        match self {
            Proxy::Coregate(d) => format!("coregate-{d}"),
            Proxy::CoregateWith(d, v) => format!("coregate-{d}-{}", v.name),
            p => p.name().to_string(),
        }
    }

    /// Extra flags for coregate's command line.
    pub fn extra_args(self) -> &'static [String] {
        match self {
            Proxy::CoregateWith(_, v) => &v.args,
            _ => &[],
        }
    }
}

/// `--variant NAME=FLAGS`: coregate run again with these flags, labelled `coregate-DRIVER-NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub args: Vec<String>,
}

/// Parses `nodefer=--no-defer-taskrun` or `small=--relay-buffer 0`; the value is split on
/// whitespace. The variants live for the whole process (leaked once, at start-up).
pub fn parse_variant(s: &str) -> Result<&'static Variant, String> {
    let (name, args) = s
        .split_once('=')
        .ok_or_else(|| format!("--variant: `{s}` is not NAME=FLAGS"))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("--variant: `{name}` must be letters, digits or _"));
    }
    let args: Vec<String> = args.split_whitespace().map(String::from).collect();
    if args.is_empty() {
        return Err(format!("--variant {name}: no flags given"));
    }
    Ok(Box::leak(Box::new(Variant {
        name: name.into(),
        args,
    })))
}

/// A load mode: closed loop, or open loop at a fixed rate (requests per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Closed,
    Open(u64),
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open(_) => "open",
        }
    }

    pub fn rate(self) -> Option<u64> {
        match self {
            Mode::Closed => None,
            Mode::Open(r) => Some(r),
        }
    }

    /// "closed loop" or "open loop at 1000 req/s".
    pub fn describe(self) -> String {
        match self {
            Mode::Closed => "closed loop".into(),
            Mode::Open(r) => format!("open loop at {r} req/s"),
        }
    }
}

/// Parses a comma-separated list of positive integers. `allow_empty` admits "" (and "none").
pub fn parse_list(flag: &str, s: &str, allow_empty: bool) -> Result<Vec<u64>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return if allow_empty {
            Ok(Vec::new())
        } else {
            Err(format!("--{flag}: the list is empty"))
        };
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        match part.parse::<u64>() {
            Ok(v) if v > 0 => out.push(v),
            _ => return Err(format!("--{flag}: `{part}` is not a positive integer")),
        }
    }
    Ok(out)
}

/// Parses a CPU list such as "0,2-3" into ascending, de-duplicated CPU numbers (the generator's
/// parser, with the flag named in errors).
pub fn parse_cpus(flag: &str, s: &str) -> Result<Vec<usize>, String> {
    let mut out = crate::load::parse_cpus(s)
        .map_err(|_| format!("--{flag}: `{s}` is not a CPU list (e.g. 0,2-3)"))?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats CPUs as the comma list the subprocesses take.
pub fn cpus_arg(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses "10s", "500ms", "2m" or a bare number of seconds into seconds (the generator's parser,
/// with the flag named in errors).
pub fn parse_duration(flag: &str, s: &str) -> Result<f64, String> {
    crate::load::parse_duration(s)
        .map(|d| d.as_secs_f64())
        .map_err(|_| format!("--{flag}: `{s}` is not a duration (e.g. 10s, 500ms)"))
}

/// The proxies to run, in order: coregate per driver, nginx, HAProxy, then the relay floor.
pub fn proxies(
    only: &str,
    drivers: &str,
    variants: &[&'static Variant],
) -> Result<Vec<Proxy>, String> {
    let mut want = Vec::new();
    for name in only.split(',').map(str::trim) {
        match name {
            "coregate" | "nginx" | "haproxy" | "relay" => want.push(name),
            "" => return Err("--only: empty proxy name".into()),
            other => {
                return Err(format!(
                    "--only: unknown proxy `{other}` (expected coregate, nginx, haproxy, relay)"
                ))
            }
        }
    }
    let mut drv: Vec<&'static str> = Vec::new();
    for d in drivers.split(',').map(str::trim) {
        let d = match d {
            "uring" | "io_uring" => "uring",
            "epoll" => "epoll",
            other => {
                return Err(format!(
                    "--drivers: unknown driver `{other}` (expected uring, epoll)"
                ))
            }
        };
        if !drv.contains(&d) {
            drv.push(d);
        }
    }
    let mut out = Vec::new();
    if want.contains(&"coregate") {
        for d in &drv {
            out.push(Proxy::Coregate(d));
            out.extend(variants.iter().map(|v| Proxy::CoregateWith(d, v)));
        }
    }
    for (name, p) in [
        ("nginx", Proxy::Nginx),
        ("haproxy", Proxy::Haproxy),
        ("relay", Proxy::Relay),
    ] {
        if want.contains(&name) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Where everything runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Cpus {
    pub proxy: usize,
    /// The backend's CPUs.
    pub backend: Vec<usize>,
    /// The load generator's CPUs (one thread each).
    pub load: Vec<usize>,
}

/// Picks the proxy CPU (default: the last allowed core) and splits the load CPUs (default: all the
/// others): with two or more, the backend gets the first half and the generator the rest, so they do
/// not fight; with one, they share it.
pub fn cpus(
    allowed: &[usize],
    proxy: Option<usize>,
    load: Option<&str>,
) -> Result<(Cpus, Vec<String>), String> {
    let mut warnings = Vec::new();
    let proxy = match proxy.or_else(|| allowed.last().copied()) {
        Some(p) => p,
        None => return Err("cannot tell which CPUs are available; pass --proxy-cpu".into()),
    };
    let load = match load {
        Some(s) => parse_cpus("load-cpus", s)?,
        None => {
            let rest: Vec<usize> = allowed.iter().copied().filter(|&c| c != proxy).collect();
            if rest.is_empty() {
                warnings.push(format!(
                    "only one CPU: the load generator and backend share CPU {proxy} with the proxy"
                ));
                vec![proxy]
            } else {
                rest
            }
        }
    };
    if load.is_empty() {
        return Err("--load-cpus: the list is empty".into());
    }
    if !allowed.is_empty() {
        if let Some(c) = std::iter::once(&proxy)
            .chain(&load)
            .find(|c| !allowed.contains(c))
        {
            return Err(format!(
                "CPU {c} is not available (available: {})",
                cpus_arg(allowed)
            ));
        }
    }
    if load.contains(&proxy) && load.len() > 1 {
        warnings.push(format!(
            "--load-cpus includes the proxy CPU {proxy}: figures will be noisy"
        ));
    }
    let (backend, gen) = if load.len() >= 2 {
        let half = load.len() / 2;
        (load[..half].to_vec(), load[half..].to_vec())
    } else {
        (load.clone(), load)
    };
    Ok((
        Cpus {
            proxy,
            backend,
            load: gen,
        },
        warnings,
    ))
}

/// Everything `compare` will do, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The coregate binary (only checked when coregate is among the proxies).
    pub coregate: PathBuf,
    /// The `coregate-load` binary used for serve, relay and run.
    pub load_bin: PathBuf,
    pub cpus: Cpus,
    pub rounds: usize,
    /// Passed to `run` verbatim after validation.
    pub duration: String,
    pub warmup: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: Vec<u64>,
    pub body_sizes: Vec<u64>,
    pub modes: Vec<Mode>,
    pub proxies: Vec<Proxy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("x", "64, 1000", false).unwrap(), vec![64, 1000]);
        assert_eq!(parse_list("x", "", true).unwrap(), Vec::<u64>::new());
        assert!(parse_list("x", "", false).is_err());
        assert!(parse_list("x", "1,,2", false).is_err());
        assert!(parse_list("x", "0", false).is_err());
        assert!(parse_list("x", "a", false).is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("c", "0,2-3,2").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpus("c", "3-1").is_err());
        assert!(parse_cpus("c", "").is_err());
        assert_eq!(cpus_arg(&[0, 2, 3]), "0,2,3");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("d", "10s").unwrap(), 10.0);
        assert_eq!(parse_duration("d", "500ms").unwrap(), 0.5);
        assert_eq!(parse_duration("d", "2m").unwrap(), 120.0);
        assert_eq!(parse_duration("d", "0s").unwrap(), 0.0);
        assert!(parse_duration("d", "ten").is_err());
        assert!(parse_duration("d", "-1s").is_err());
    }

    #[test]
    fn proxy_selection() {
        let p = proxies("relay,coregate,nginx", "epoll,uring", &[]).unwrap();
        assert_eq!(
            p,
            vec![
                Proxy::Coregate("epoll"),
                Proxy::Coregate("uring"),
                Proxy::Nginx,
                Proxy::Relay
            ]
        );
        assert_eq!(p[0].label(), "coregate-epoll");
        assert!(proxies("coregate,envoy", "uring", &[])
            .unwrap_err()
            .contains("envoy"));
        assert!(proxies("coregate", "kqueue", &[]).is_err());
        assert!(proxies("", "uring", &[]).is_err());
        let v = parse_variant("nodefer=--no-defer-taskrun --ring-entries 256").unwrap();
        assert_eq!(v.args, ["--no-defer-taskrun", "--ring-entries", "256"]);
        let p = proxies("coregate", "uring", &[v]).unwrap();
        assert_eq!(
            p,
            vec![Proxy::Coregate("uring"), Proxy::CoregateWith("uring", v)]
        );
        assert_eq!(p[1].label(), "coregate-uring-nodefer");
        assert_eq!(p[1].name(), "coregate");
        assert!(parse_variant("nodefer").is_err());
        assert!(parse_variant("a b=--x").is_err());
        assert!(parse_variant("x=").is_err());
    }

    #[test]
    fn cpu_split() {
        let (c, w) = cpus(&[0, 1], None, None).unwrap();
        assert_eq!((c.proxy, c.backend, c.load), (1, vec![0], vec![0]));
        assert!(w.is_empty());
        let (c, _) = cpus(&[0, 1, 2, 3, 4], None, None).unwrap();
        assert_eq!((c.proxy, c.backend, c.load), (4, vec![0, 1], vec![2, 3]));
        let (c, _) = cpus(&[0, 1, 2, 3], Some(0), Some("1-3")).unwrap();
        assert_eq!((c.proxy, c.backend, c.load), (0, vec![1], vec![2, 3]));
        let (c, w) = cpus(&[0], None, None).unwrap();
        assert_eq!(c.load, vec![0]);
        assert_eq!(w.len(), 1);
        assert!(cpus(&[0, 1], None, Some("x")).is_err());
        assert!(cpus(&[0, 1], Some(7), None).unwrap_err().contains("CPU 7"));
        assert!(cpus(&[0, 1], None, Some("0-2"))
            .unwrap_err()
            .contains("CPU 2"));
    }
}
