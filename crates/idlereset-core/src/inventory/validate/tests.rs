//! Inventory validation: every check reports its line and column, and typos get a hint.

#![allow(clippy::unwrap_used)]
use super::*;

fn parse(text: &str) -> Result<Inventory, InventoryError> {
    Inventory::parse(text, "inv.toml", &Catalog::builtin().unwrap())
}

/// The (line, column) of the first occurrence of `needle` in `text`, computed independently.
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let before = &text[..text.find(needle).unwrap()];
    (
        before.split('\n').count(),
        before.split('\n').next_back().unwrap().chars().count() + 1,
    )
}

fn first(e: &InventoryError) -> (usize, usize, &str) {
    let d = &e.diagnostics[0];
    (d.line, d.column, d.message.as_str())
}

const GOOD: &str = r#"name = "app to db"
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = 900
failure = "reset"
matches = ["198.18.2.0/24:5432"]

[[hop]]
catalog = "aws-nat-gateway"

[[hop]]
name = "alb"
catalog = "aws-alb"
idle_timeout_s = 120

[[client]]
name = "orders"
library = "hikaricp"
connections = 40
current = { keepalive = false, pool_idle_timeout_s = 3600 }
"#;

#[test]
fn valid_inventory_resolves_catalog_and_defaults() {
    let inv = parse(GOOD).unwrap();
    assert_eq!(inv.hops.len(), 3);
    let fw = &inv.hops[0];
    assert_eq!(
        (fw.kind, fw.idle_timeout_s, fw.failure, fw.honours_keepalive),
        (HopKind::Firewall, 900.0, Failure::Reset, true)
    );
    assert_eq!(fw.line, 2);
    let nat = &inv.hops[1];
    assert_eq!(
        (nat.name.as_str(), nat.kind, nat.idle_timeout_s),
        ("aws-nat-gateway", HopKind::Nat, 350.0)
    );
    assert_eq!(nat.catalog.as_deref(), Some("aws-nat-gateway"));
    let alb = &inv.hops[2];
    assert_eq!(
        (alb.idle_timeout_s, alb.honours_keepalive),
        (120.0, false),
        "override within 1-4000, L7 from catalog"
    );
    assert_eq!(inv.clients[0].library, Library::Hikaricp);
    assert_eq!(inv.clients[0].current.pool_idle_timeout_s, Some(3600.0));
    assert_eq!(inv.options, Options::default());
}

#[test]
fn proxy_defaults_to_ignoring_keepalive() {
    let inv = parse("[[hop]]\nname='p'\nkind='proxy'\nidle_timeout_s=60\n").unwrap();
    assert!(!inv.hops[0].honours_keepalive);
    let inv = parse("[[hop]]\nname='p'\nkind='proxy'\nidle_timeout_s=60\nhonours_keepalive=true\n")
        .unwrap();
    assert!(inv.hops[0].honours_keepalive);
}

#[test]
fn unknown_catalog_id_points_at_the_value_with_a_hint() {
    let text = "[[hop]]\nname = \"nat\"\ncatalog = \"aws-nat-gatway\"\n";
    let e = parse(text).unwrap_err();
    let (l, c, m) = first(&e);
    assert_eq!((l, c), pos(text, "\"aws-nat-gatway\""));
    assert!(m.contains("aws-nat-gatway"), "{m}");
    assert_eq!(
        e.diagnostics[0].hint.as_deref(),
        Some("did you mean \"aws-nat-gateway\"?")
    );
    assert!(
        e.to_string().contains("inv.toml:3:11: unknown catalog id"),
        "{e}"
    );
}

#[test]
fn library_aliases_versions_and_ambiguous_names() {
    let hop = "[[hop]]\nname='x'\nkind='firewall'\nidle_timeout_s=900\n";
    let inv = parse(&format!(
        "{hop}[[client]]\nname='a'\nlibrary='psycopg2'\nversion='2.9.13'\n"
    ))
    .unwrap();
    let c = &inv.clients[0];
    assert_eq!(c.library, Library::Libpq);
    assert_eq!(c.library_alias.as_deref(), Some("psycopg2"));
    assert_eq!(c.version.map(|v| v.to_string()).as_deref(), Some("2.9.13"));
    let inv = parse(&format!("{hop}[[client]]\nname='a'\nlibrary='go'\n")).unwrap();
    assert_eq!(
        (
            inv.clients[0].library,
            inv.clients[0].library_alias.as_deref()
        ),
        (Library::Go, None)
    );
    let e = parse(&format!("{hop}[[client]]\nname='a'\nlibrary='grpc'\n")).unwrap_err();
    let hint = e.diagnostics[0].hint.clone().unwrap_or_default();
    assert!(
        hint.contains("grpcio") && hint.contains("grpc-go"),
        "{hint}"
    );
    let e = parse(&format!(
        "{hop}[[client]]\nname='a'\nlibrary='hikaricp'\nversion='2.x'\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("2.x"), "{e}");
}

#[test]
fn connections_have_an_upper_bound() {
    let hop = "[[hop]]\nname='x'\nkind='firewall'\nidle_timeout_s=900\n";
    let e = parse(&format!(
        "{hop}[[client]]\nname='a'\nlibrary='go'\nconnections=9223372036854775807\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("connections must be 1-"), "{e}");
    let ok = parse(&format!(
        "{hop}[[client]]\nname='a'\nlibrary='go'\nconnections={MAX_CONNECTIONS}\n"
    ))
    .unwrap();
    assert_eq!(ok.clients[0].connections, MAX_CONNECTIONS);
}

#[test]
fn unknown_kind_and_library_suggest() {
    let text = "[[hop]]\nname='x'\nkind = 'firewal'\nidle_timeout_s = 900\n[[client]]\nname='c'\nlibrary = 'hikarcp'\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.diagnostics.len(), 2, "{e}");
    assert_eq!(
        (e.diagnostics[0].line, e.diagnostics[0].column),
        pos(text, "'firewal'")
    );
    assert_eq!(
        e.diagnostics[0].hint.as_deref(),
        Some("did you mean \"firewall\"?")
    );
    assert_eq!(
        (e.diagnostics[1].line, e.diagnostics[1].column),
        pos(text, "'hikarcp'")
    );
    assert_eq!(
        e.diagnostics[1].hint.as_deref(),
        Some("did you mean \"hikaricp\"?")
    );
}

#[test]
fn syntax_and_type_errors_have_positions() {
    let text = "[[hop]]\nname = 'x'\nkind = 'nat'\nidle_timeout_s = 'soon'\n";
    let e = parse(text).unwrap_err();
    assert_eq!(first(&e).0, 4, "{e}");
    let text = "[[hop]]\nname = 'x'\nkind = 'nat'\nidle_timout_s = 900\n";
    let e = parse(text).unwrap_err();
    let (l, _, m) = first(&e);
    assert_eq!(l, 4, "{e}");
    assert!(m.contains("idle_timout_s"), "{m}");
    let text = "[[hop]]\nname = 'x\n";
    assert_eq!(first(&parse(text).unwrap_err()).0, 2);
}

#[test]
fn semantic_errors_are_all_reported_in_order() {
    let text = "\
[[hop]]
name = 'fw'
kind = 'firewall'
idle_timeout_s = 0.5
matches = ['198.18.2.0/33:5432']

[[hop]]
name = 'nlb'
catalog = 'aws-nlb'
idle_timeout_s = 7000

[[client]]
name = 'c'
library = 'go'
connections = 0
";
    let e = parse(text).unwrap_err();
    let got: Vec<(usize, usize)> = e.diagnostics.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        got,
        vec![
            pos(text, "0.5"),
            pos(text, "'198.18.2.0/33"),
            pos(text, "7000"),
            {
                let (l, c) = pos(text, "connections = 0");
                (l, c + "connections = ".len())
            }
        ],
        "{e}"
    );
    assert!(e.diagnostics[2].message.contains("60-6000"), "{e}");
}

#[test]
fn missing_fields_and_duplicates() {
    let e = parse("name = 'p'\n").unwrap_err();
    assert!(e.diagnostics[0].message.contains("no [[hop]]"));
    let text = "[[hop]]\nname = 'x'\n\n[[hop]]\nname = 'x'\nkind = 'nat'\nidle_timeout_s = 300\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.diagnostics.len(), 2, "{e}");
    assert!(
        e.diagnostics[0]
            .message
            .contains("neither `kind` nor `catalog`"),
        "{e}"
    );
    assert!(
        e.diagnostics[1]
            .message
            .contains("neither `idle_timeout_s` nor `catalog`"),
        "{e}"
    );
    assert!(e.diagnostics.iter().all(|d| d.line == 1), "{e}");
    let text = "[[hop]]\nname = 'x'\nkind = 'nat'\nidle_timeout_s = 300\n[[hop]]\nname = 'x'\nkind = 'nat'\nidle_timeout_s = 300\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.diagnostics[0].line, 6, "{e}");
    assert!(
        e.diagnostics[0].message.contains("already used on line 1"),
        "{e}"
    );
}

#[test]
fn os_defaults_are_not_hops() {
    let e = parse("[[hop]]\ncatalog = 'linux-tcp-keepalive-time'\n").unwrap_err();
    assert!(e.diagnostics[0].message.contains("not a middlebox"), "{e}");
}

#[test]
fn plan_options() {
    let inv = parse(
        "[[hop]]\nname='x'\nkind='nat'\nidle_timeout_s=300\n[plan]\nprobes = 3\nip_version = 6\n",
    )
    .unwrap();
    assert_eq!(
        inv.options,
        Options {
            probes: 3,
            ip_version: IpVersion::V6
        }
    );
    let e = parse("[[hop]]\nname='x'\nkind='nat'\nidle_timeout_s=300\n[plan]\nprobes = 300\n")
        .unwrap_err();
    assert_eq!((e.diagnostics[0].line, e.diagnostics[0].column), (6, 10));
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("é\nx", 3), (2, 1));
    assert_eq!(line_col("éx", 2), (1, 2));
    assert_eq!(line_col("ab", 99), (1, 3));
}

/// 20,000 hops (issue: 21 s when every hop's line was found by scanning from the start and
/// every name was compared with every earlier one). Positions now come from one
/// [`LineIndex`] and duplicates from a map; the speed itself is measured by
/// `bench/inventory.sh`, not here.
#[test]
fn twenty_thousand_hops_validate_with_positions_from_the_line_index() {
    use std::fmt::Write as _;
    let mut text = String::new();
    for i in 0..20_000 {
        let _ = write!(
            text,
            "[[hop]]\nname = 'h{i}'\nkind = 'nat'\nidle_timeout_s = 300\n\n"
        );
    }
    let inv = parse(&text).unwrap();
    assert_eq!(inv.hops.len(), 20_000);
    assert_eq!(inv.hops[19_999].line, 19_999 * 5 + 1);
    text.push_str("[[hop]]\nname = 'h12345'\nkind = 'nat'\nidle_timeout_s = 300\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    assert_eq!(
        (e.diagnostics[0].line, e.diagnostics[0].column),
        (20_000 * 5 + 2, 8)
    );
    assert!(
        e.diagnostics[0]
            .message
            .contains(&format!("already used on line {}", 12_345 * 5 + 1)),
        "{e}"
    );
}

proptest::proptest! {
    #[test]
    fn line_index_agrees_with_line_col(s in "(a|é|\n|\r\n| ){0,40}", at in 0usize..100) {
        proptest::prop_assert_eq!(LineIndex::new(&s).line_col(&s, at), line_col(&s, at));
    }

    #[test]
    fn never_panics(s in "(\\[\\[hop\\]\\]|name|kind|=|'x'|900|\n| |catalog|\"aws\"|\\[|\\]){0,30}") {
        let _ = parse(&s);
    }
}
