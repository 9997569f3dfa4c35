//! A real gRPC server (grpcio, `drivers/python/grpc_server.py`) in the lab's `db` namespace, for
//! the grpcio runs of `verify`'s client matrix. It permits client pings down to one second
//! without calls (as `plan`'s `server:` settings ask) and sends no keepalive of its own, so only
//! the client library under test keeps a flow alive. Killed when dropped.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idlereset_linux::NetNs;

use crate::error::{LabError, Result};
use crate::verify::driver::drivers_dir;

/// Port of the gRPC server in the lab.
pub const GRPC_PORT: u16 = 50051;

/// The smallest client ping interval the lab server permits without calls, milliseconds.
pub const MIN_PING_MS: u32 = 1000;

/// A running gRPC server.
pub struct GrpcServer {
    child: Child,
}

impl GrpcServer {
    /// Start the server inside `ns` (the `db` namespace), listening on `addr`, and wait until
    /// it accepts connections.
    pub fn start(ns: &NetNs, lab: &str, addr: IpAddr) -> Result<GrpcServer> {
        let script = drivers_dir().join("python/grpc_server.py");
        let host = match addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(host)
            .arg(GRPC_PORT.to_string())
            .arg(MIN_PING_MS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = ns
            .run(move || cmd.spawn())?
            .map_err(|e| LabError::io("run", &script, e))?;
        let mut s = GrpcServer { child };
        let target = SocketAddr::new(addr, GRPC_PORT);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(LabError::lab(
                    lab,
                    format!(
                        "gRPC server exited at start-up ({status}); is grpcio installed (.ci/install-deps)?"
                    ),
                ));
            }
            let up = ns.run(|| {
                std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::lab(lab, "gRPC server not ready after 15 s"))
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
