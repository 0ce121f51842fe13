//! A real authoritative DNS server for discovery tests: hickory-server's in-memory zone behind its
//! own UDP and TCP listeners (one port, on 127.0.0.1), on a tokio runtime in a thread of its own.
//! Records can be replaced while it serves (as a Kubernetes endpoint change or a Consul health flip
//! would change them); dropping or stopping it closes the port, so queries are refused.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    rt: tokio::runtime::Handle,
}

fn name(s: &str) -> Name {
    let mut n = Name::from_str(s).expect("dns name");
    n.set_fqdn(true);
    n
}

impl DnsServer {
    /// Serves the zone `origin` (like "svc.test").
    pub fn start(origin: &str) -> DnsServer {
        let origin = name(origin);
        let mut zone =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            name(&format!("ns.{origin}")),
            name(&format!("admin.{origin}")),
            1,
            60,
            60,
            600,
            1,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1));
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        // one port for both transports (truncated UDP answers are asked again over TCP)
        let (udp, tcp) = loop {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = std::net::TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        udp.set_nonblocking(true).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            handle_tx.send(rt.handle().clone()).unwrap();
            rt.block_on(async move {
                let mut server = Server::new(catalog);
                server.register_socket(tokio::net::UdpSocket::from_std(udp).unwrap());
                let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
                server.register_listener(tcp, Duration::from_secs(5), 65_535);
                let _ = stopped.await;
                let _ = server.shutdown_gracefully().await;
            });
        });
        DnsServer {
            addr,
            zone,
            stop: Some(stop),
            thread: Some(thread),
            rt: handle_rx.recv().unwrap(),
        }
    }

    /// Replaces `owner`'s records of `rtype` (none: removes them).
    pub fn set(&self, owner: &str, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        let owner = name(owner);
        let key = RrKey::new(LowerName::new(&owner), rtype);
        let zone = self.zone.clone();
        self.rt.block_on(async move {
            let mut records = zone.records_mut().await;
            if data.is_empty() {
                records.remove(&key);
                return;
            }
            let mut set = RecordSet::with_ttl(owner, rtype, ttl);
            for d in data {
                set.add_rdata(d);
            }
            records.insert(key, Arc::new(set));
        });
    }

    /// `owner`'s A and AAAA records: the addresses given (IPv4 and IPv6 may be mixed).
    pub fn set_addrs(&self, owner: &str, ttl: u32, ips: &[&str]) {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for ip in ips {
            match ip.parse::<std::net::IpAddr>().unwrap() {
                std::net::IpAddr::V4(a) => v4.push(RData::A(A(a))),
                std::net::IpAddr::V6(a) => v6.push(RData::AAAA(AAAA(a))),
            }
        }
        self.set(owner, RecordType::A, ttl, v4);
        self.set(owner, RecordType::AAAA, ttl, v6);
    }

    /// `owner`'s SRV records: (priority, weight, port, target).
    pub fn set_srv(&self, owner: &str, ttl: u32, records: &[(u16, u16, u16, &str)]) {
        let data = (records.iter())
            .map(|(p, w, port, t)| RData::SRV(SRV::new(*p, *w, *port, name(t))))
            .collect();
        self.set(owner, RecordType::SRV, ttl, data);
    }

    /// Stops serving: the port closes and queries to it are refused.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
