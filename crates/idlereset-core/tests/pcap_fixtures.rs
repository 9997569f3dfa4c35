//! The analyser on captures written by tcpdump, dumpcap and editcap (see
//! tests/fixtures/README.md).

use idlereset_core::pcap::analyse_bytes;
use idlereset_core::pcap::flow::Config;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn tcpdump_any_sll2_and_dumpcap_pcapng_agree() {
    for (name, format) in [
        ("loopback-any-sll2-client-abort.pcap", "pcap"),
        ("loopback-dumpcap-client-abort.pcapng", "pcapng"),
    ] {
        let (fa, err) = analyse_bytes(&fixture(name), Config::default());
        assert!(
            err.error.is_none() && err.damage.is_empty(),
            "{name}: {err:?}"
        );
        assert_eq!(fa.format, format);
        assert_eq!((fa.packets, fa.other_packets), (8, 0), "{name}");
        let a = fa.analysis;
        assert_eq!(a.stats.flows, 1, "{name}");
        assert!(
            (a.stats.max_idle_s - 6.5).abs() < 0.1,
            "{name}: {}",
            a.stats.max_idle_s
        );
        // The client aborting its own idle connection is not an idle failure.
        assert!(a.events.is_empty(), "{name}: {:?}", a.events);
        let flow = &a.notable_flows[0];
        assert_eq!(
            (flow.client.as_str(), flow.server.as_str()),
            ("127.0.0.1:39320", "127.0.0.1:45432")
        );
    }
}

#[test]
fn with_a_lower_bar_the_abort_is_still_not_a_failure_but_the_idle_is_seen() {
    let cfg = Config {
        min_idle_ns: 1_000_000_000,
        ..Config::default()
    };
    let (fa, _) = analyse_bytes(&fixture("loopback-any-sll2-client-abort.pcap"), cfg);
    assert!(fa.analysis.events.is_empty());
    assert_eq!(fa.analysis.stats.idle_flows, 1);
}

#[test]
fn modified_pcap_is_read_like_the_classic_file_it_was_converted_from() {
    let (classic, _) = analyse_bytes(&fixture("lab/reset-v4.pcap"), Config::default());
    let (modified, read) = analyse_bytes(
        &fixture("lab-reset-v4-editcap-modpcap.pcap"),
        Config::default(),
    );
    assert!(
        read.error.is_none() && read.damage.is_empty() && read.notes.is_empty(),
        "{read:?}"
    );
    assert_eq!(modified.format, "pcap");
    assert_eq!(modified.packets, classic.packets);
    assert_eq!(modified.analysis.stats.flows, classic.analysis.stats.flows);
    // Modified pcap has microsecond timestamps; the lab file had nanoseconds.
    let (m, c) = (&modified.analysis.events, &classic.analysis.events);
    assert_eq!(m.len(), 1);
    assert_eq!(m.len(), c.len());
    assert_eq!(
        (
            m[0].kind,
            m[0].origin,
            &m[0].client,
            &m[0].server,
            &m[0].evidence
        ),
        (
            c[0].kind,
            c[0].origin,
            &c[0].client,
            &c[0].server,
            &c[0].evidence
        )
    );
    assert!((m[0].idle_before_s - c[0].idle_before_s).abs() < 2e-6);
}

#[test]
fn a_pcap_variant_read_as_damage_is_unsafe_with_a_hint_never_clean() {
    // Nokia's record headers are longer than the standard 16 bytes: read as classic pcap,
    // almost the whole file is skipped as damage. That must not pass as "no failures".
    let (fa, read) = analyse_bytes(
        &fixture("lab-reset-v4-editcap-nokia.pcap"),
        Config::default(),
    );
    assert!(fa.verdict_unsafe, "{read:?}");
    assert!(fa.analysis.events.is_empty());
    assert!(
        read.notes
            .iter()
            .any(|n| n.contains("editcap -F pcap") && n.contains("Nokia")),
        "{:?}",
        read.notes
    );
}
