//! Start `idlereset exporter` on a free loopback port and learn its address from the
//! `--ready-file` it writes once it serves (never from the order of its log lines).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running exporter; interrupted (SIGINT, so it removes its tracefs instance) on drop.
pub struct RunningExporter {
    pub child: Child,
    pub addr: SocketAddr,
    ready_file: PathBuf,
}

/// Start `idlereset exporter --listen 127.0.0.1:0 ARGS` and wait (up to 60 s) until it serves.
pub fn start(args: &[&str]) -> RunningExporter {
    start_with(args, |_| {})
}

/// [`start`], with a hook to adjust the command (user, environment) before it is spawned.
pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> RunningExporter {
    static N: AtomicU32 = AtomicU32::new(0);
    let ready_file = std::env::temp_dir().join(format!(
        "idlereset-test-exporter-{}-{}.addr",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&ready_file);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idlereset"));
    cmd.arg("exporter")
        .args(["--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready_file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    adjust(&mut cmd);
    let mut child = cmd.spawn().expect("spawn idlereset exporter");
    let t0 = Instant::now();
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file)
            && let Ok(a) = text.trim().parse()
        {
            break a;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the exporter exited before serving: {status}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the exporter wrote no ready file within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    RunningExporter {
        child,
        addr,
        ready_file,
    }
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ready_file);
    }
}
