//! Lab traffic generators shared by the frozen-timer preset, the fault and their tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::lab::Lab;

/// A busy flow: `db` streams to `app` at a set rate (optionally `app` pings back); counters
/// and the first failure are shared with the caller. Stops when dropped.
pub struct BusyFlow {
    /// The app's source port (the conntrack entry's original source port).
    pub sport: u16,
    /// Bytes the app received.
    pub received: Arc<AtomicU64>,
    /// The first error either side saw.
    pub failed: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl BusyFlow {
    /// Stop streaming (also on drop).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for BusyFlow {
    fn drop(&mut self) {
        self.stop();
    }
}

impl BusyFlow {
    /// Listen on `port` in `db`, connect from `app`, stream `rate` bytes/s, ping every `ping`.
    pub fn start(lab: &Lab, port: u16, rate: usize, ping: Option<Duration>) -> Result<BusyFlow> {
        let listener = lab
            .ns("db")?
            .run(|| TcpListener::bind(("0.0.0.0", port)))?
            .map_err(|e| LabError::lab(lab.name(), format!("db listen on {port}: {e}")))?;
        let dst = SocketAddr::new(lab.topology().db_addr(false), port);
        let client = lab
            .ns("app")?
            .run(|| TcpStream::connect_timeout(&dst, Duration::from_secs(3)))?
            .map_err(|e| LabError::lab(lab.name(), format!("app connect {dst}: {e}")))?;
        let sport = client
            .local_addr()
            .map_err(|e| LabError::lab(lab.name(), e.to_string()))?
            .port();
        let (server, _) = listener
            .accept()
            .map_err(|e| LabError::lab(lab.name(), format!("db accept: {e}")))?;
        let flow = BusyFlow {
            sport,
            received: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(std::sync::Mutex::new(None)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let fail = |f: &Arc<std::sync::Mutex<Option<String>>>, m: String| {
            if let Ok(mut g) = f.lock() {
                g.get_or_insert(m);
            }
        };
        // app: read everything; write pings if asked.
        let (rx, failed, stop) = (
            flow.received.clone(),
            flow.failed.clone(),
            flow.stop.clone(),
        );
        let mut reader = client;
        let _ = reader.set_read_timeout(Some(Duration::from_millis(200)));
        let mut pinger = reader.try_clone().ok();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        fail(&failed, "app: connection closed by peer".into());
                        return;
                    }
                    Ok(n) => {
                        rx.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        fail(&failed, format!("app read: {e}"));
                        return;
                    }
                }
            }
        });
        if let (Some(every), Some(mut w)) = (ping, pinger.take()) {
            let (failed, stop) = (flow.failed.clone(), flow.stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = w.write_all(b"ping\n") {
                        fail(&failed, format!("app ping: {e}"));
                        return;
                    }
                    std::thread::sleep(every);
                }
            });
        }
        // db: stream at `rate`, discard what the app sends.
        let (failed, stop) = (flow.failed.clone(), flow.stop.clone());
        let mut writer = server;
        let mut drain = writer.try_clone().ok();
        if let Some(mut d) = drain.take() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while d.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
        let _ = writer.set_write_timeout(Some(Duration::from_secs(1)));
        std::thread::spawn(move || {
            let chunk = vec![7u8; (rate / 50).max(1)];
            let t0 = Instant::now();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match writer.write_all(&chunk) {
                    Ok(()) => sent += chunk.len(),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        fail(&failed, format!("db write: {e}"));
                        return;
                    }
                }
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(w) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(w);
                }
            }
        });
        Ok(flow)
    }
}
