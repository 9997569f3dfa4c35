//! The one task that watches every test connection (TCP_INFO every 20 ms) and sends each
//! decided result to its session's control connection.

use std::sync::Arc;
use std::time::Duration;

use idlereset_core::reverse;

use super::Shared;

pub(super) async fn run(sh: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let mut events = Vec::new();
        {
            let Ok(mut guard) = sh.registry.lock() else {
                return;
            };
            let reg = &mut *guard;
            let sessions = &mut reg.sessions;
            reg.watched.retain_mut(|w| {
                let Some(s) = sessions.get_mut(&w.token) else {
                    return false; // the session ended: drop its test
                };
                let Some(res) = w.watch.check(&w.sock) else {
                    return true;
                };
                s.tests = s.tests.saturating_sub(1);
                let _ = s.results.try_send(reverse::result_line(w.rung, &res));
                events.push(format!(
                    "session {}.. rung {} ({} s): {}",
                    w.token.short(),
                    w.rung,
                    w.idle_s,
                    reverse::result_word(&res)
                ));
                false
            });
        }
        for e in events {
            sh.log.event(&e);
        }
    }
}
