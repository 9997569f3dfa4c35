//! Per-library settings: the plan's numbers in each client's own terms.
//!
//! A keepalive value is useless if the engineer cannot find where it goes. So each library gets
//! the exact keys it reads (connection-string parameters, pool properties, dialer fields, socket
//! options, channel arguments), a snippet to paste, the opt-in the runbook warns about (the OS
//! sysctls only apply to sockets that set SO_KEEPALIVE), and the problems with what the client
//! runs today. What a library does by default, which settings its version has and its minimum
//! ping period come from `data/libraries.toml` ([`crate::libraries`]); the writers in
//! `writers` only know where each library reads a value, and never emit a key the version
//! lacks.

mod writers;

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::inventory::{Client, IpVersion, Library};
use crate::libraries::{Behaviour, Libraries, Profile};
use crate::plan::Heartbeat;
use crate::plan::cost::{self, KeepaliveCost};
use crate::plan::keepalive::{Keepalive, Pool};

/// What [`plan_client`] needs from the path plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// Smallest idle timeout over all hops, seconds.
    pub path_timeout_s: f64,
    /// Name of the hop with that timeout.
    pub limiting_hop: &'a str,
    /// The path's keepalive plan.
    pub keepalive: Keepalive,
    /// The path's pool limits.
    pub pool: Pool,
    /// The heartbeat, when a hop ignores TCP keepalives.
    pub heartbeat: Option<&'a Heartbeat>,
}

/// One setting value, printed as the library expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean setting.
    Bool(bool),
    /// A number (seconds, milliseconds or a count, as the key says).
    Int(u64),
    /// Any other text (a duration with its unit, a URL parameter, ...).
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(t) => write!(f, "{t}"),
        }
    }
}

/// Ordered `key -> value` settings (a JSON object in the output, in the order written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings(pub Vec<(String, Value)>);

impl Settings {
    pub(crate) fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.push((key.to_string(), value.into()));
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Int(n)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Int(u64::from(n))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl Serialize for Settings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Settings, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Settings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Settings, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Settings(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A problem with what the client runs today (or with what the path asks of the library).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `no-keepalive`, `keepalive-too-late`, `pool-idle-too-long`, `no-heartbeat`,
    /// `below-library-minimum`.
    pub kind: String,
    /// One sentence: what was observed and why it fails.
    pub detail: String,
}

/// The plan for one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientPlan {
    /// The client's name in the inventory.
    pub name: String,
    /// The client library.
    pub library: Library,
    /// The library version the advice is for (the inventory's, or the assumed one).
    #[serde(default)]
    pub version: String,
    /// `true` when the inventory named no version and the data file's assumed one was used.
    #[serde(default)]
    pub version_assumed: bool,
    /// Connections held open across the path (all instances together).
    pub connections: u64,
    /// Exact keys and values in the library's terms.
    pub settings: Settings,
    /// Code or configuration to paste.
    pub snippet: String,
    /// Free-text advice beside the settings.
    pub notes: Vec<String>,
    /// What is wrong with what the client runs today.
    pub problems: Vec<Problem>,
    /// Longest a connection of this client can sit idle today (keepalive time, heartbeat or pool
    /// idle timeout, library defaults included); `None` = unbounded.
    pub current_idle_bound_s: Option<f64>,
    /// Keepalive traffic of this client's connections.
    pub cost: KeepaliveCost,
}

impl ClientPlan {
    fn problem(&mut self, kind: &str, detail: String) {
        self.problems.push(Problem {
            kind: kind.into(),
            detail,
        });
    }
}

/// Host keepalive values when nothing on the socket overrides them (Linux defaults).
pub const HOST_KEEPALIVE: (f64, f64, u32) = (7200.0, 75.0, 9);

/// Settings, snippet, notes and problems for one client.
pub(crate) fn plan_client(c: &Client, ctx: &Ctx<'_>, ip: IpVersion) -> ClientPlan {
    let prof = Libraries::builtin().profile(c.library, c.version);
    let b = prof.behaviour;
    let (problems, bound) = problems(c, b, ctx);
    let mut p = ClientPlan {
        name: c.name.clone(),
        library: c.library,
        version: prof.version.to_string(),
        version_assumed: prof.assumed,
        connections: c.connections,
        settings: Settings::default(),
        snippet: String::new(),
        notes: Vec::new(),
        problems,
        current_idle_bound_s: bound,
        cost: cost::keepalive_cost(&ctx.keepalive, c.connections, ip),
    };
    if let Some(alias) = &c.library_alias {
        p.notes.push(format!(
            "library {alias:?} is read as {:?}; name the library exactly to get its own defaults",
            c.library.as_str()
        ));
    }
    if prof.assumed {
        p.notes.push(format!(
            "advice for {}: add `version = \"...\"` to the client when it runs another version",
            prof.describe()
        ));
    }
    // Only ever shorten a pool's idle timeout / lifetime: a shorter current value is kept.
    let idle = shorter(
        ctx.pool.idle_timeout_s,
        c.current.pool_idle_timeout_s.or(b.pool_idle_s),
    );
    let life = shorter(ctx.pool.max_lifetime_s, c.current.max_lifetime_s);
    writers::write(&mut p, &prof, ctx, idle, life);
    p.notes.extend(b.notes.iter().cloned());
    if let Some(h) = &b.hides_resets {
        p.notes.push(format!(
            "{h}: it hides resets from the application but does not keep the flow alive"
        ));
    }
    if let Some(h) = ctx.heartbeat {
        p.notes.push(format!(
            "hop {:?} ignores TCP keepalives (idle timeout {} s): send application traffic on connections idle for {} s, or retire connections before {} s of age",
            h.hop, h.hop_timeout_s, h.interval_s, h.hop_timeout_s
        ));
    }
    p
}

fn shorter(planned: u64, current: Option<f64>) -> u64 {
    match current {
        Some(c) if c >= 1.0 && (c as u64) < planned => c as u64,
        _ => planned,
    }
}

/// What the client does today on an idle connection (library defaults with the inventory's
/// `current` values over them), in configured seconds. Shared by `plan` and `verify`.
#[derive(Debug, Clone, PartialEq)]
pub struct Today {
    /// Whether the sockets set SO_KEEPALIVE.
    pub so_keepalive: bool,
    /// TCP_KEEPIDLE in effect, seconds.
    pub keepidle_s: f64,
    /// TCP_KEEPINTVL in effect, seconds.
    pub keepintvl_s: f64,
    /// TCP_KEEPCNT in effect, a count of probes.
    pub keepcnt: u32,
    /// Pool idle timeout, seconds; `None` = idle connections are never closed.
    pub pool_idle_s: Option<f64>,
    /// Pool maximum connection age, seconds; `None` = unlimited.
    pub max_lifetime_s: Option<f64>,
    /// Application traffic on idle connections (the inventory's heartbeat or the library's ping).
    pub heartbeat_s: Option<f64>,
}

/// The client's behaviour today, from its library row and `current`.
pub fn today(c: &Client, b: &Behaviour) -> Today {
    let cur = &c.current;
    let (hi, hv, hc) = HOST_KEEPALIVE;
    Today {
        so_keepalive: cur.keepalive.unwrap_or(b.so_keepalive),
        keepidle_s: cur.keepalive_time_s.or(b.keepidle_s).unwrap_or(hi),
        keepintvl_s: cur
            .keepalive_intvl_s
            .or(b.keepintvl_s)
            .or(b.runtime_keepintvl_s)
            .unwrap_or(hv),
        keepcnt: cur
            .keepalive_probes
            .or(b.keepcnt)
            .or(b.runtime_keepcnt)
            .unwrap_or(hc),
        pool_idle_s: cur.pool_idle_timeout_s.or(b.pool_idle_s),
        max_lifetime_s: cur.max_lifetime_s.or(b.max_lifetime_s),
        heartbeat_s: cur.heartbeat_s.or(b.ping_s),
    }
}

fn problems(c: &Client, b: &Behaviour, ctx: &Ctx<'_>) -> (Vec<Problem>, Option<f64>) {
    let t = ctx.path_timeout_s;
    let hop = ctx.limiting_hop;
    let now = today(c, b);
    let mut out = Vec::new();
    let mut add = |kind: &str, detail: String| {
        out.push(Problem {
            kind: kind.into(),
            detail,
        })
    };
    // Application traffic more often than the path timeout keeps the flow alive by itself.
    let beats = now.heartbeat_s.is_some_and(|h| h < t);
    let (on, time, intvl) = (now.so_keepalive, now.keepidle_s, now.keepintvl_s);
    if !beats && !on {
        let hidden = b
            .hides_resets
            .as_ref()
            .map(|_| " (the library's retry / validation hides the resets from the application; the flow still dies)")
            .unwrap_or_default();
        add(
            "no-keepalive",
            format!(
                "sockets do not set SO_KEEPALIVE, so no OS keepalive setting applies; {hop:?} forgets an idle connection after {t} s{hidden}"
            ),
        );
    } else if !beats && time >= t {
        add(
            "keepalive-too-late",
            format!(
                "first keepalive probe after {time} s idle, but {hop:?} forgets the flow after {t} s"
            ),
        );
    } else if !beats && intvl >= t {
        add(
            "keepalive-too-late",
            format!("keepalive interval {intvl} s is not below {hop:?}'s {t} s"),
        );
    }
    let ka_holds = beats || (on && time < t && intvl < t);
    let pool_idle = now.pool_idle_s;
    if let Some(idle) = pool_idle.filter(|&i| i >= t && !ka_holds) {
        add(
            "pool-idle-too-long",
            format!("the pool keeps idle connections {idle} s, longer than {hop:?}'s {t} s"),
        );
    }
    if let Some(h) = ctx.heartbeat {
        let covered = now.heartbeat_s.is_some_and(|x| x < h.hop_timeout_s)
            || now.max_lifetime_s.is_some_and(|x| x < h.hop_timeout_s)
            || pool_idle.is_some_and(|x| x < h.hop_timeout_s);
        if !covered {
            add(
                "no-heartbeat",
                format!(
                    "{:?} ignores TCP keepalives and cuts connections idle for {} s; nothing in this client sends traffic sooner",
                    h.hop, h.hop_timeout_s
                ),
            );
        }
    }
    let bounds = [on.then_some(time), now.heartbeat_s, pool_idle];
    let bound = bounds
        .into_iter()
        .flatten()
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
    (out, bound)
}

/// The profile a client plan was written for (for `verify`).
pub fn profile_of(p: &ClientPlan) -> Profile<'static> {
    let v = if p.version_assumed {
        None
    } else {
        crate::libraries::Version::parse(&p.version).ok()
    };
    Libraries::builtin().profile(p.library, v)
}
