//! Caveats shown beside a choice's result: the runbook's traps, as written.
//!
//! A replay file may recommend a fix that, taken literally, does not fix anything. The one
//! this module knows is the keepalive sysctl alone (`sysctl -w net.ipv4.tcp_keepalive_time=300`):
//! the `tcp_keepalive_*` sysctls are only defaults for sockets that set SO_KEEPALIVE, so for an
//! application that never sets it they change nothing and the resets go on (`replay --live`
//! applies the command as written and the lab connection still resets). The caveat is attached
//! when the scenario is loaded, so every output (line mode, terminal UI, `--json`, `--report`)
//! shows it beside the result, offline as well as live.
//!
//! [`effective_action`] is also what live mode applies: the machine-readable action of a
//! choice, or a command spelled out in its result.

use super::model::{Action, Choice, Scenario};

/// Words that show a choice already makes the application opt in to keepalive.
const OPT_IN: &[&str] = &[
    "so_keepalive",
    "setsockopt",
    "setkeepalive",
    "tcp_keepidle",
    "keepalives=1",
    "keepalives_idle",
    "tcpkeepalive",
    "keepalive on the socket",
    "keepalive: true",
];

/// The system change a choice makes: its machine-readable action, or one read from a command
/// spelled out in its result (`tcp_keepalive_time=300`, `nf_conntrack_tcp_timeout_established=N`).
pub fn effective_action(action: &Action, result: &str) -> Action {
    if action.changes_system() {
        return action.clone();
    }
    let find = |key: &str| -> Option<u32> {
        let i = result.find(key)? + key.len();
        let digits: String = result
            .get(i..)?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    if let Some(t) = find("tcp_keepalive_time=") {
        return Action::SysctlKeepalive {
            time_s: t,
            intvl_s: find("tcp_keepalive_intvl="),
            probes: find("tcp_keepalive_probes="),
        };
    }
    if let Some(t) = find("nf_conntrack_tcp_timeout_established=") {
        return Action::FirewallTimeout { timeout_s: t };
    }
    Action::None
}

/// The caveat for a choice, if taken as written it is a known trap.
pub(crate) fn caveat_for(choice: &Choice) -> Option<String> {
    let Action::SysctlKeepalive { time_s, .. } = effective_action(&choice.action, &choice.result)
    else {
        return None;
    };
    let said = format!("{} {}", choice.text, choice.result).to_ascii_lowercase();
    if OPT_IN.iter().any(|w| said.contains(w)) {
        return None;
    }
    Some(format!(
        "as written this is the runbook's trap: net.ipv4.tcp_keepalive_time={time_s} alone \
         changes nothing for an application that never sets SO_KEEPALIVE (the tcp_keepalive_* \
         sysctls are only defaults for sockets that opt in, and most drivers and pools leave it \
         off). Enable keepalive in the client too (libpq keepalives=1 keepalives_idle={time_s}, \
         PgJDBC tcpKeepAlive=true, Go net.Dialer KeepAlive); `idlereset audit` shows which \
         sockets opt in, and `replay --live` applies this command as written: the lab \
         connection still resets."
    ))
}

/// Attach the derived caveat to every choice that has none of its own.
pub(crate) fn annotate(s: &mut Scenario) {
    for round in &mut s.rounds {
        if let super::model::RoundKind::Decision { choices } = &mut round.kind {
            for c in choices.iter_mut().filter(|c| c.caveat.is_none()) {
                c.caveat = caveat_for(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn choice(text: &str, result: &str) -> Choice {
        Choice {
            letter: 'A',
            text: text.into(),
            recommended: true,
            result: result.into(),
            minutes: None,
            action: Action::None,
            covers: vec![],
            evidence: None,
            caveat: None,
        }
    }

    #[test]
    fn sysctl_alone_gets_the_caveat() {
        let c = choice(
            "Apply the fix",
            "sysctl -w net.ipv4.tcp_keepalive_time=300. Done.",
        );
        let caveat = caveat_for(&c).unwrap();
        assert!(caveat.contains("SO_KEEPALIVE"), "{caveat}");
        assert!(caveat.contains("tcp_keepalive_time=300"), "{caveat}");
    }

    #[test]
    fn sysctl_with_the_opt_in_or_other_fixes_do_not() {
        let c = choice(
            "Apply the fix",
            "Set SO_KEEPALIVE in the pool and sysctl -w net.ipv4.tcp_keepalive_time=300.",
        );
        assert_eq!(caveat_for(&c), None);
        let c = choice(
            "Raise the timeout",
            "nf_conntrack_tcp_timeout_established=7200",
        );
        assert_eq!(caveat_for(&c), None);
        let mut c = choice("Keepalive", "done");
        c.action = Action::KeepaliveOnSocket {
            idle_s: 300,
            intvl_s: None,
            probes: None,
        };
        assert_eq!(caveat_for(&c), None);
    }

    #[test]
    fn commands_in_results_become_actions() {
        assert_eq!(
            effective_action(
                &Action::None,
                "x tcp_keepalive_time=300 tcp_keepalive_probes=3"
            ),
            Action::SysctlKeepalive {
                time_s: 300,
                intvl_s: None,
                probes: Some(3)
            }
        );
        assert_eq!(
            effective_action(&Action::None, "tcp_keepalive_time=99999999999999"),
            Action::None
        );
    }
}
