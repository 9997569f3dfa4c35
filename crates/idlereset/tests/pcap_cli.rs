//! `idlereset pcap` end to end: exit codes, JSON contract, damaged files.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use idlereset_core::pcap::writer::{LINKTYPE_RAW, PcapWriter};

#[path = "support/packets.rs"]
mod packets_support;
use packets_support::packet;

#[path = "support/cli.rs"]
mod cli_support;

/// Handshake, one exchange, `idle` seconds of silence, a query, then (if `forged`) a RST with
/// the server's address but TTL 64 where the server's packets have 62.
fn capture(path: &Path, idle: f64, forged: bool) {
    write_pcap(path, &packets(idle, forged));
}

fn write_pcap(path: &Path, pkts: &[(f64, Vec<u8>)]) {
    std::fs::write(path, packets_support::pcap_bytes(pkts)).unwrap();
}

fn packets(idle: f64, forged: bool) -> Vec<(f64, Vec<u8>)> {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const RST: u8 = 0x04;
    let mut pkts = vec![
        (0.0, packet(true, 64, 1, SYN, 100, 0, 0)),
        (0.01, packet(false, 62, 50, SYN | ACK, 900, 101, 0)),
        (0.02, packet(true, 64, 2, ACK, 101, 901, 0)),
        (0.03, packet(true, 64, 3, ACK | PSH, 101, 901, 20)),
        (0.04, packet(false, 62, 51, ACK | PSH, 901, 121, 200)),
        (0.05, packet(true, 64, 4, ACK, 121, 1101, 0)),
        (0.05 + idle, packet(true, 64, 5, ACK | PSH, 121, 1101, 20)),
    ];
    if forged {
        pkts.push((0.06 + idle, packet(false, 64, 0, RST | ACK, 1101, 141, 0)));
    } else {
        pkts.push((
            0.06 + idle,
            packet(false, 62, 52, ACK | PSH, 1101, 141, 100),
        ));
    }
    pkts
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idlereset-pcap-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn firewall_reset_json_and_exit_1() {
    let p = tmp("reset.pcap");
    capture(&p, 950.0, true);
    let out = run(&["pcap", p.to_str().unwrap(), "--json"]);
    cli_support::assert_exit(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["flows"], 1);
    let e = &v["events"][0];
    assert_eq!(e["kind"], "reset");
    assert_eq!(e["origin"], "middlebox");
    assert_eq!(e["client"], "198.18.0.10:41000");
    assert_eq!(e["server"], "198.19.0.20:5432");
    assert!((e["idle_before_s"].as_f64().unwrap() - 950.0).abs() < 0.1);
    assert!(e["time"].as_str().unwrap().starts_with("2023-11-14T"));
    assert_eq!(
        v["idle_timeout_s"]["high"].as_f64().map(f64::round),
        Some(950.0)
    );
    assert!(v["candidates"].as_array().is_some_and(|c| !c.is_empty()));

    let text = run(&["pcap", p.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("RESET") && stdout.contains("middlebox") && stdout.contains("Verdict:"),
        "{stdout}"
    );
}

#[test]
fn dash_reads_the_capture_from_standard_input() {
    let p = tmp("stdin.pcap");
    capture(&p, 950.0, true);
    let from_file = run(&["pcap", p.to_str().unwrap(), "--json"]);
    let from_pipe = run_piped(&["pcap", "-", "--json"], &std::fs::read(&p).unwrap());
    cli_support::assert_exit(&from_pipe, 1);
    let mut a: serde_json::Value = serde_json::from_slice(&from_file.stdout).unwrap();
    let mut b: serde_json::Value = serde_json::from_slice(&from_pipe.stdout).unwrap();
    assert_eq!(b["files"][0]["file"], "-");
    redact_files(&mut a);
    redact_files(&mut b);
    assert_eq!(a, b, "the same analysis from a pipe as from the file");
    assert_eq!(b["events"][0]["kind"], "reset");

    let twice = run(&["pcap", "-", "-"]);
    cli_support::assert_exit(&twice, 2);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("only once"));
}

/// Run idlereset with `input` written to its standard input through a pipe.
fn run_piped(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_pipe_named_by_path_is_read_like_the_file() {
    // `idlereset pcap <(zcat cap.pcap.gz)` or `/dev/stdin` fed by a pipe: a file that cannot
    // be read at an offset, so it is read from start to end.
    let p = tmp("devstdin.pcap");
    capture(&p, 950.0, true);
    let from_file = run(&["pcap", p.to_str().unwrap(), "--json"]);
    let from_pipe = run_piped(
        &["pcap", "/dev/stdin", "--json"],
        &std::fs::read(&p).unwrap(),
    );
    cli_support::assert_exit(&from_pipe, 1);
    let mut a: serde_json::Value = serde_json::from_slice(&from_file.stdout).unwrap();
    let mut b: serde_json::Value = serde_json::from_slice(&from_pipe.stdout).unwrap();
    redact_files(&mut a);
    redact_files(&mut b);
    assert_eq!(a, b, "the same analysis from a named pipe as from the file");
}

#[test]
fn survived_idle_exits_0() {
    let p = tmp("ok.pcap");
    capture(&p, 950.0, false);
    let out = run(&["pcap", p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["events"].as_array().map(Vec::len), Some(0));
    assert!((v["idle_timeout_s"]["low"].as_f64().unwrap() - 950.0).abs() < 0.1);
    assert_eq!(
        v["files"][0]["notable_flows"][0]["longest_survived_idle_s"]
            .as_f64()
            .map(f64::round),
        Some(950.0)
    );

    let text = run(&["pcap", p.to_str().unwrap(), "--flows"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("flow 198.18.0.10:41000 -> 198.19.0.20:5432: 8 packets"),
        "{stdout}"
    );
    assert!(stdout.contains("No idle failures in 1 flows"), "{stdout}");
}

#[test]
fn capture_cut_inside_its_last_record_is_a_normal_end_with_a_note() {
    let p = tmp("cut.pcap");
    capture(&p, 950.0, true);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
    let out = run(&["pcap", p.to_str().unwrap(), "--json"]);
    cli_support::assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["flows"], 1);
    let f = &v["files"][0];
    assert_eq!(f["packets"], 7);
    assert_eq!(f["damage"].as_array().map(Vec::len), Some(0));
    let note = f["notes"][0].as_str().unwrap();
    assert!(
        note.contains("ends inside the last record") && note.contains("byte offset"),
        "{note}"
    );
}

fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    idlereset_core::pcap::reader::Records::new(bytes)
        .map(|r| r.unwrap().offset as usize)
        .collect()
}

/// The capture with `garbage` bytes inserted before record `at`.
fn with_garbage(path: &Path, idle: f64, at: usize, garbage: usize) -> (u64, u64) {
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_RAW, 65535, false).unwrap();
    for (t, p) in &packets(idle, true) {
        w.write_packet(
            Duration::from_secs_f64(1_700_000_000.0 + t),
            p,
            p.len() as u32,
        )
        .unwrap();
    }
    let mut bytes = w.into_inner();
    let off = record_offsets(&bytes)[at];
    let junk: Vec<u8> = (0..garbage).map(|i| (i * 37 + 11) as u8 | 0x80).collect();
    bytes.splice(off..off, junk);
    std::fs::write(path, bytes).unwrap();
    (off as u64, garbage as u64)
}

#[test]
fn garbage_between_records_is_skipped_and_reported() {
    let p = tmp("garbage.pcap");
    let (off, len) = with_garbage(&p, 950.0, 3, 40);
    let out = run(&["pcap", p.to_str().unwrap(), "--json"]);
    // The damage lies before the idle gap: the reset after it is still certain.
    cli_support::assert_exit(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["files"][0];
    assert_eq!(f["packets"], 8);
    assert_eq!(f["damage"][0]["offset"], off);
    assert_eq!(f["damage"][0]["skipped"], len);
    assert!(
        f["damage"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("garbage.pcap")
    );
    assert_eq!(f["verdict_unsafe"], false);
    assert_eq!(v["events"][0]["kind"], "reset");
    let text = run(&["pcap", p.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&format!(
            "damaged: {} byte offset {off}, {len} bytes skipped",
            p.display()
        )),
        "{stdout}"
    );
}

#[test]
fn damage_inside_the_idle_gap_makes_the_verdict_unsafe_exit_2() {
    let p = tmp("gap-damage.pcap");
    with_garbage(&p, 950.0, 6, 64);
    let out = run(&["pcap", p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["verdict_unsafe"], true);
    assert!(
        v["events"][0]["damage"]
            .as_str()
            .unwrap()
            .contains("uncertain")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("verdict unsafe"));
}

#[test]
fn unknown_link_type_is_a_clear_error() {
    let p = tmp("linktype.pcap");
    let mut w = PcapWriter::new(Vec::new(), 147, 65535, false).unwrap();
    for (t, pkt) in &packets(10.0, true) {
        w.write_packet(
            Duration::from_secs_f64(1_700_000_000.0 + t),
            pkt,
            pkt.len() as u32,
        )
        .unwrap();
    }
    std::fs::write(&p, w.into_inner()).unwrap();
    let out = run(&["pcap", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("linktype.pcap") && stderr.contains("link type [147] is not supported"),
        "{stderr}"
    );
}

#[test]
fn corrupt_timestamp_is_ignored_with_a_note_not_decades_of_idle() {
    let p = tmp("badtime.pcap");
    capture(&p, 2.0, false);
    let mut bytes = std::fs::read(&p).unwrap();
    let off = record_offsets(&bytes)[3];
    bytes[off + 3] ^= 0x40; // seconds field, little endian: +34 years
    std::fs::write(&p, &bytes).unwrap();
    let out = run(&["pcap", p.to_str().unwrap(), "--json"]);
    cli_support::assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["files"][0];
    assert!(f["stats"]["max_idle_s"].as_f64().unwrap() < 3.0, "{f}");
    assert!(
        f["notes"][0].as_str().unwrap().contains("record ignored"),
        "{f}"
    );
    let text = run(&["pcap", p.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        !stdout.contains(" d,") && stdout.contains("longest idle 2.0 s"),
        "{stdout}"
    );
}

/// A busy flow (a request every 0.2 s for 200 s) ending in a RST with the server's address:
/// forged by a middlebox (TTL 64, the server's packets have 62) or the server's own.
fn busy_capture(path: &Path, forged: bool) {
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const RST: u8 = 0x04;
    let mut pkts = packets(0.5, false);
    pkts.truncate(6);
    let (mut cseq, mut sseq, mut t) = (121u32, 1101u32, 0.05);
    for i in 0..1000u16 {
        t += 0.2;
        pkts.push((t, packet(true, 64, 10 + i, ACK | PSH, cseq, sseq, 20)));
        cseq += 20;
        pkts.push((
            t + 0.001,
            packet(false, 62, 60 + i, ACK | PSH, sseq, cseq, 100),
        ));
        sseq += 100;
        pkts.push((t + 0.002, packet(true, 64, 2000 + i, ACK, cseq, sseq, 0)));
    }
    t += 0.2;
    pkts.push((t, packet(true, 64, 5000, ACK | PSH, cseq, sseq, 20)));
    let rst = if forged {
        packet(false, 64, 0, RST | ACK, sseq, cseq + 20, 0)
    } else {
        packet(false, 62, 1100, RST | ACK, sseq, cseq + 20, 0)
    };
    pkts.push((t + 0.001, rst));
    write_pcap(path, &pkts);
}

#[test]
fn middlebox_reset_of_a_busy_flow_is_an_active_reset_outside_the_bracket() {
    let p = tmp("busy.pcap");
    busy_capture(&p, true);
    for min_idle in ["5s", "0.5s"] {
        let out = run(&[
            "pcap",
            p.to_str().unwrap(),
            "--json",
            "--min-idle",
            min_idle,
        ]);
        assert_eq!(out.status.code(), Some(1), "{min_idle}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["events"].as_array().map(Vec::len),
            Some(1),
            "{min_idle}: {v}"
        );
        let e = &v["events"][0];
        assert_eq!(
            (e["kind"].as_str(), e["origin"].as_str()),
            (Some("active-reset"), Some("middlebox"))
        );
        assert!(e["idle_before_s"].as_f64().unwrap() < 0.3);
        assert!(e["last_minute"]["packets"].as_u64().unwrap() > 800);
        assert!(
            e["reading"]
                .as_str()
                .unwrap()
                .contains("idlereset conntrack --watch")
        );
        assert_eq!(v["summary"]["idle_failures"], 0);
        assert_eq!(v["summary"]["active_resets"], 1);
        assert!(
            v["idle_timeout_s"]["high"].is_null() && v["idle_timeout_s"]["low"].is_null(),
            "{min_idle}: {v}"
        );
    }
    let text = run(&["pcap", p.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("ACTIVE-RESET") && !stdout.contains("Idle timeout between"),
        "{stdout}"
    );
}

#[test]
fn endpoint_reset_of_a_busy_flow_is_listed_only_with_all() {
    let p = tmp("busy-endpoint.pcap");
    busy_capture(&p, false);
    let out = run(&["pcap", p.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["events"].as_array().map(Vec::len), Some(0));
    let out = run(&["pcap", p.to_str().unwrap(), "--json", "--all"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["events"][0]["kind"], "active-reset");
    assert_eq!(v["events"][0]["origin"], "endpoint");
    assert_eq!(v["summary"]["endpoint_active_resets"], 1);
}

/// Replace every `"file": "..."` value (paths differ between checkouts).
fn redact_files(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "file" {
                    *x = serde_json::Value::String("[file]".into());
                } else {
                    redact_files(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_files),
        _ => {}
    }
}

#[test]
fn json_contract_snapshot_on_a_lab_capture() {
    let fixture = format!(
        "{}/../idlereset-core/tests/fixtures/lab/reset-v4.pcap",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = run(&["pcap", &fixture, "--json", "--min-idle", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    redact_files(&mut v);
    insta::assert_snapshot!(serde_json::to_string_pretty(&v).unwrap());
}

#[test]
fn missing_file_and_help() {
    let out = run(&["pcap", "/nonexistent/x.pcap"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.pcap"));
    let help = run(&["pcap", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}

#[test]
fn merge_sees_idle_gaps_across_rotated_files() {
    let pkts = packets(950.0, true);
    let (a, b) = (tmp("rot-1.pcap"), tmp("rot-2.pcap"));
    write_pcap(&a, &pkts[..6]);
    write_pcap(&b, &pkts[6..]);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let separate = run(&["pcap", a, b, "--json"]);
    assert_eq!(separate.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&separate.stdout).unwrap();
    assert_eq!(v["flows"], 2);

    let merged = run(&["pcap", "--merge", a, b, "--json"]);
    cli_support::assert_exit(&merged, 1);
    let v: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert_eq!(v["flows"], 1);
    assert_eq!(v["events"][0]["origin"], "middlebox");
    assert_eq!(v["files"][0]["packets"], 8);
}

#[test]
fn a_mostly_damaged_file_is_unsafe_even_merged_with_a_good_one() {
    // A Nokia-format pcap (written by editcap) reads as damage from its first records on;
    // merged with a clean capture its skipped bytes are a tiny share of the total, and the
    // verdict must still be unsafe.
    // The good file is large enough that the bad one's skipped bytes are under a tenth of
    // the total and under 64 KiB: only the per-file rule can call the verdict unsafe.
    let good = tmp("merge-good.pcap");
    let mut pkts = packets(950.0, false);
    let (mut cseq, sseq) = (141u32, 1201u32);
    for i in 0..200u16 {
        let t = 951.0 + f64::from(i) * 0.01;
        pkts.push((t, packet(true, 64, 10 + i, 0x18, cseq, sseq, 400)));
        cseq += 400;
        pkts.push((t + 0.005, packet(false, 62, 60 + i, 0x10, sseq, cseq, 0)));
    }
    write_pcap(&good, &pkts);
    assert!(std::fs::metadata(&good).unwrap().len() > 10 * 2330);
    let nokia = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../idlereset-core/tests/fixtures/lab-reset-v4-editcap-nokia.pcap"
    );
    let out = run(&["pcap", "--merge", good.to_str().unwrap(), nokia, "--json"]);
    cli_support::assert_exit(&out, 2);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["verdict_unsafe"], true);
    let notes = v["files"][0]["notes"].to_string();
    assert!(notes.contains("editcap -F pcap"), "{notes}");
    let alone = run(&["pcap", good.to_str().unwrap(), "--json"]);
    cli_support::assert_exit(&alone, 0);
}
