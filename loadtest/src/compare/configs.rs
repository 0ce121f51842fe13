//! Configuration files for the proxies under test: coregate (minimal TOML), nginx and HAProxy. Each
//! is set up the same way: one worker pinned to the proxy CPU, keep-alive to the one backend, no
//! access logs. Pure text generation so the output can be unit-tested.

use std::net::SocketAddr;
use std::path::Path;

/// coregate: one upstream, one catch-all route. Listen address, workers, CPUs and driver come from
/// the command line.
pub fn coregate(backend: SocketAddr) -> String {
    format!(
        "[[upstream]]\nname = \"be\"\nendpoints = [\"{backend}\"]\nmax_idle_per_endpoint = 1024\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"be\"\n"
    )
}

/// nginx's `worker_cpu_affinity` mask for one CPU: a `1` followed by `cpu` zeros.
pub fn nginx_affinity(cpu: usize) -> String {
    format!("1{}", "0".repeat(cpu))
}

/// nginx as a reverse proxy: one worker pinned to `cpu`, upstream keep-alive, access log off,
/// everything it writes (pid, error log, temp files) under `prefix`. Proxy buffers hold a 64 KiB
/// response in memory so large bodies never spill to temp files. `user root;` only when running as
/// root (otherwise nginx would switch the worker to `nobody`, which cannot use the prefix).
pub fn nginx(
    prefix: &Path,
    listen: SocketAddr,
    backend: SocketAddr,
    cpu: usize,
    root: bool,
) -> String {
    let p = prefix.display();
    let user = if root { "user root;\n" } else { "" };
    format!(
        "{user}worker_processes 1;\nworker_cpu_affinity {aff};\nworker_rlimit_nofile 65536;\n\
         daemon off;\nmaster_process on;\npid {p}/nginx.pid;\nerror_log {p}/nginx-error.log warn;\n\
         events {{ worker_connections 20000; multi_accept on; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n\
         \x20 client_body_temp_path {p}/client_body_temp;\n  proxy_temp_path {p}/proxy_temp;\n\
         \x20 fastcgi_temp_path {p}/fastcgi_temp;\n  uwsgi_temp_path {p}/uwsgi_temp;\n\
         \x20 scgi_temp_path {p}/scgi_temp;\n\
         \x20 upstream be {{ server {backend}; keepalive 1024; keepalive_requests 10000000; keepalive_timeout 300s; }}\n\
         \x20 server {{\n    listen {listen} backlog=4096;\n    location / {{\n\
         \x20     proxy_pass http://be;\n      proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n      proxy_buffer_size 16k;\n\
         \x20     proxy_buffers 8 16k;\n    }}\n  }}\n}}\n",
        aff = nginx_affinity(cpu),
    )
}

/// HAProxy in HTTP mode: one thread pinned to `cpu`, server-side connection reuse, keep-alive on
/// both sides, no logs. No `maxconn`: HAProxy sizes it from the file-descriptor limit it gets.
pub fn haproxy(listen: SocketAddr, backend: SocketAddr, cpu: usize) -> String {
    format!(
        "global\n  nbthread 1\n  cpu-map 1/1 {cpu}\n\n\
         defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n\
         \x20 timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n\
         \x20 timeout http-keep-alive 300s\n\n\
         frontend fe\n  bind {listen}\n  default_backend be\n\n\
         backend be\n  server s1 {backend}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn coregate_config_parses_as_toml() {
        let text = coregate(a("127.0.0.1:9000"));
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            v["upstream"][0]["endpoints"][0].as_str(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(
            v["upstream"][0]["max_idle_per_endpoint"].as_integer(),
            Some(1024)
        );
        assert_eq!(v["route"][0]["path_prefix"].as_str(), Some("/"));
        assert_eq!(v["route"][0]["upstream"].as_str(), Some("be"));
    }

    #[test]
    fn nginx_config() {
        assert_eq!(nginx_affinity(0), "1");
        assert_eq!(nginx_affinity(3), "1000");
        let c = nginx(
            Path::new("/tmp/x"),
            a("127.0.0.1:8080"),
            a("127.0.0.1:9000"),
            1,
            true,
        );
        assert!(c.starts_with("user root;\n"));
        assert!(c.contains("worker_processes 1;"));
        assert!(c.contains("worker_cpu_affinity 10;"));
        assert!(c.contains("daemon off;"));
        assert!(c.contains("pid /tmp/x/nginx.pid;"));
        assert!(c.contains("access_log off;"));
        assert!(c.contains("server 127.0.0.1:9000; keepalive 1024;"));
        assert!(c.contains("listen 127.0.0.1:8080"));
        assert!(c.contains("proxy_temp_path /tmp/x/proxy_temp;"));
        assert!(c.contains("proxy_set_header Connection \"\";"));
        let c = nginx(
            Path::new("/tmp/x"),
            a("127.0.0.1:8080"),
            a("127.0.0.1:9000"),
            1,
            false,
        );
        assert!(!c.contains("user "));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn haproxy_config() {
        let c = haproxy(a("127.0.0.1:8080"), a("127.0.0.1:9000"), 5);
        for want in [
            "nbthread 1",
            "cpu-map 1/1 5",
            "http-reuse always",
            "option http-keep-alive",
            "mode http",
            "timeout connect",
            "bind 127.0.0.1:8080",
            "server s1 127.0.0.1:9000",
        ] {
            assert!(c.contains(want), "missing {want}");
        }
        assert!(!c.contains("log "));
    }
}
