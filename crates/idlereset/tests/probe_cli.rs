#![allow(clippy::unwrap_used)]
//! `probe` errors clearly on targets that cannot be measured (loopback only, no lab needed).

use std::process::Command;

#[test]
fn refused_target_is_a_clear_error() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["probe", &format!("127.0.0.1:{port}"), "--max", "5s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn bad_target_and_precision_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["probe", "no-port-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"));
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(["probe", "127.0.0.1:1", "--precision", "0%"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
