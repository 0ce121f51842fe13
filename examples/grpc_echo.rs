//! The tests' gRPC server (`test.Echo`, tonic, h2c) as a process, for `benches/e2e/grpc_cost.sh`:
//! prints `listening <addr>` and serves until killed. Build: `cargo build --release --example
//! grpc_echo` (it uses the dev-dependencies).

#[allow(dead_code)]
#[path = "../tests/common/grpc.rs"]
mod grpc;
#[path = "../tests/common/tokio_peer.rs"]
mod tokio_peer;

fn main() {
    let up = grpc::GrpcUpstream::start();
    println!("listening {}", up.addr);
    loop {
        std::thread::park();
    }
}
