//! Advice for conntrack hops with more than one path (`asymmetric = true` or `failover = ...`
//! in the inventory).
//!
//! Keepalive planning assumes a hop sees every packet of a flow. When some packets go around it
//! (an asymmetric return path, or a failover that moves one direction elsewhere), Linux
//! conntrack's TCP window tracking falls behind: the packets it does see acknowledge data it
//! never saw, so it marks them INVALID. INVALID packets still pass most rulesets, but they
//! neither refresh the entry's timer nor count on it: the timer freezes on a busy flow and the
//! connection is cut one timeout later. Keepalives and application pings cannot help (they are
//! INVALID too). What does: `nf_conntrack_tcp_be_liberal = 1` on that box, which stops marking
//! out-of-window packets INVALID, at the price of weaker TCP state checking; and an alert on
//! the INVALID counters so the next asymmetry is seen in minutes. Measured with
//! `idlereset lab reproduce --preset nat-43200-invalid` (Linux 6.18, see docs/conntrack.md).

use serde::{Deserialize, Serialize};

use crate::inventory::{Hop, OtherPath};

/// The sysctl that stops out-of-window packets from being marked INVALID.
pub(crate) const BE_LIBERAL_SYSCTL: &str = "net.netfilter.nf_conntrack_tcp_be_liberal";
/// Where the plan suggests persisting it on the hop's box.
pub(crate) const BE_LIBERAL_FILE: &str = "/etc/sysctl.d/90-idlereset-conntrack.conf";
/// The Prometheus alerts (deploy/prometheus/alerts.yml) that see INVALID packets and frozen
/// timers on the hop's box (with `idlereset exporter` running there).
pub(crate) const ALERTS: [&str; 2] = [
    "IdleresetConntrackInvalidRising",
    "IdleresetConntrackFrozenTimers",
];
/// What `be_liberal = 1` costs.
pub const TRADE_OFF: &str = "the box then accepts out-of-window TCP packets (weaker TCP state checking: conntrack no longer rejects packets outside the window it tracked), so set it only on boxes whose paths can be asymmetric";

/// What the plan says about one hop with a second path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiPathHop {
    /// Name of the hop.
    pub hop: String,
    /// How packets can go around it.
    pub other_path: OtherPath,
    /// Why the hop is at risk (INVALID packets, frozen timer).
    pub risk: String,
    /// `sysctl` name -> value to set on the hop's box.
    pub sysctl: String,
    /// Value to set (`1`).
    pub value: u64,
    /// File that persists it.
    pub sysctl_file: String,
    /// What setting it costs ([`TRADE_OFF`]).
    pub trade_off: String,
    /// Alerts to deploy for the hop's box.
    pub alerts: Vec<String>,
}

/// Advice for every hop of `hops` with a second path, in path order.
pub(crate) fn advise(hops: &[Hop]) -> Vec<MultiPathHop> {
    hops.iter()
        .filter_map(|h| h.other_path.as_ref().map(|o| advice(h, o)))
        .collect()
}

fn advice(h: &Hop, o: &OtherPath) -> MultiPathHop {
    MultiPathHop {
        hop: h.name.clone(),
        other_path: o.clone(),
        risk: format!(
            "packets of a flow can go around {:?} ({}): its conntrack window tracking falls behind and marks the flow's packets INVALID; they neither refresh nor count on the entry, so its timer freezes on a busy flow and the connection is cut one timeout ({} s) after the path changed. Keepalives and application pings do not help (they are INVALID too)",
            h.name,
            o.label(),
            h.idle_timeout_s
        ),
        sysctl: BE_LIBERAL_SYSCTL.to_string(),
        value: 1,
        sysctl_file: BE_LIBERAL_FILE.to_string(),
        trade_off: TRADE_OFF.to_string(),
        alerts: ALERTS.iter().map(|a| a.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalog::Catalog;
    use crate::inventory::Inventory;
    use crate::plan::{plan, render};

    const EXAMPLE: &str =
        include_str!("../../../../examples/inventories/nat-43200-asymmetric.toml");
    const ALERTS_YML: &str = include_str!("../../../../deploy/prometheus/alerts.yml");

    fn example() -> Inventory {
        Inventory::parse(
            EXAMPLE,
            "nat-43200-asymmetric.toml",
            &Catalog::builtin().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn asymmetric_hop_gets_be_liberal_its_trade_off_and_the_invalid_alert() {
        let p = plan(&example());
        assert_eq!(p.multipath.len(), 1);
        let m = &p.multipath[0];
        assert_eq!(m.hop, "egress-nat");
        assert_eq!(
            m.other_path,
            OtherPath {
                asymmetric: true,
                failover: Some("egress-nat-b".into())
            }
        );
        assert_eq!(
            (m.sysctl.as_str(), m.value),
            ("net.netfilter.nf_conntrack_tcp_be_liberal", 1)
        );
        assert!(m.risk.contains("INVALID") && m.risk.contains("freezes"));
        assert!(m.trade_off.contains("out-of-window"));
        for a in &m.alerts {
            assert!(
                ALERTS_YML.contains(&format!("alert: {a}")),
                "{a} is in deploy/prometheus/alerts.yml"
            );
        }
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("egress-nat") && w.contains("be_liberal=1")),
            "{:?}",
            p.warnings
        );
        let text = render::text(&p);
        assert!(text.contains("Hop egress-nat has a second path"), "{text}");
        assert!(text.contains("trade-off: the box then accepts out-of-window TCP packets"));
    }

    #[test]
    fn hops_with_one_path_get_no_advice() {
        let inv = Inventory::parse(
            include_str!("../../../../examples/inventories/nat-43200.toml"),
            "nat-43200.toml",
            &Catalog::builtin().unwrap(),
        )
        .unwrap();
        let p = plan(&inv);
        assert!(p.multipath.is_empty());
        assert!(!render::text(&p).contains("second path"));
        assert!(!render::mermaid(&p).contains("alt0"));
        // a saved plan from before the field still reads back
        let mut v = serde_json::to_value(&p).unwrap();
        v.as_object_mut().unwrap().remove("multipath");
        let back: crate::plan::Plan = serde_json::from_value(v).unwrap();
        assert!(back.multipath.is_empty());
        assert_eq!(back.hops, p.hops);
    }

    #[test]
    fn second_path_is_drawn() {
        let p = plan(&example());
        let mermaid = render::mermaid(&p);
        assert!(mermaid.contains("c0 -.->|second path| alt0"), "{mermaid}");
        assert!(mermaid.contains("alt0 -.-> srv"), "{mermaid}");
        let dot = render::dot(&p);
        assert!(dot.contains("alt0 -> srv [style=dashed]"), "{dot}");
        insta::assert_snapshot!("asymmetric_text", render::multipath(&p));
        insta::assert_snapshot!("asymmetric_mermaid", mermaid);
        insta::assert_snapshot!("asymmetric_dot", dot);
    }

    #[test]
    fn inventory_shape_is_validated_with_positions() {
        let cat = Catalog::builtin().unwrap();
        let base = "[[hop]]\nname = 'nat'\nkind = 'nat'\nidle_timeout_s = 300\n";
        let inv = Inventory::parse(&format!("{base}failover = 'nat-b'\n"), "i.toml", &cat).unwrap();
        assert_eq!(
            inv.hops[0].other_path,
            Some(OtherPath {
                asymmetric: false,
                failover: Some("nat-b".into())
            })
        );
        let inv = Inventory::parse(&format!("{base}asymmetric = false\n"), "i.toml", &cat).unwrap();
        assert_eq!(inv.hops[0].other_path, None);
        let e = Inventory::parse(&format!("{base}failover = ' '\n"), "i.toml", &cat).unwrap_err();
        assert!(
            e.to_string().contains("i.toml:5:12: failover is empty"),
            "{e}"
        );
        let e = Inventory::parse(&format!("{base}failover = 'nat'\n"), "i.toml", &cat).unwrap_err();
        assert!(
            e.to_string()
                .contains("i.toml:5:12: failover names the hop itself"),
            "{e}"
        );
        let e =
            Inventory::parse(&format!("{base}asymmetric = 'yes'\n"), "i.toml", &cat).unwrap_err();
        assert!(e.to_string().contains("i.toml:5:14:"), "{e}");
        let proxy = "[[hop]]\nname = 'p'\nkind = 'proxy'\nidle_timeout_s = 60\nasymmetric = true\n";
        let e = Inventory::parse(proxy, "i.toml", &cat).unwrap_err();
        assert!(
            e.to_string()
                .contains("i.toml:3:8: asymmetric / failover apply to conntrack hops"),
            "{e}"
        );
    }
}
