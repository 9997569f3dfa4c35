//! The compiled drivers (JVM and Go libraries): building them once, and their settings.
//!
//! The Python and Node drivers run as scripts; the JVM driver (`drivers/java/Driver.java`:
//! PgJDBC, HikariCP) and the Go driver (`drivers/go/driver.go`: lib/pq, pgx) are compiled
//! first, against the libraries Debian installs (`.ci/install-deps`): the jars in
//! `/usr/share/java`, the Go sources in `/usr/share/gocode` (GOPATH mode, offline: no module
//! proxy). A build lands in a cache directory named by a hash of the source and the library
//! versions, so a run compiles at most once and later runs start at once; within a process each
//! runtime is prepared once.
//!
//! Settings are passed in the library's own terms: PgJDBC connection parameters and HikariConfig
//! properties for the JVM; for Go the `net.Dialer` / pool fields the driver applies (see its
//! usage text).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use idlereset_core::libraries::Behaviour;
use serde_json::Value as J;
use tokio::sync::OnceCell;

use super::driver::drivers_dir;
use super::mapping::Model;
use crate::postgres::Postgres;

/// Jars the JVM driver needs, in `/usr/share/java` (`IDLERESET_JAVA_DIR` overrides).
const JARS: &[(&str, &str)] = &[
    ("postgresql.jar", "libpostgresql-jdbc-java"),
    ("HikariCP.jar", "libhikaricp-java"),
    ("slf4j-api.jar", "libslf4j-java"),
    ("slf4j-simple.jar", "libslf4j-java"),
];

/// Debian packages whose Go sources the Go driver builds against, and the variable each
/// version is stamped into.
const GO_PACKAGES: &[(&str, &str)] = &[
    ("golang-github-lib-pq-dev", "main.libpqVersion"),
    ("golang-github-jackc-pgx-v4-dev", "main.pgxVersion"),
];

/// A compiled driver: the program and the arguments before the driver's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

static JAVA: OnceCell<Result<Prepared, String>> = OnceCell::const_new();
static GO: OnceCell<Result<Prepared, String>> = OnceCell::const_new();

/// Whether `runtime` is one whose driver is compiled here.
pub fn is_compiled(runtime: &str) -> bool {
    matches!(runtime, "java" | "go")
}

/// The prepared driver of `runtime`, once [`prepare`] succeeded in this process.
pub fn prepared(runtime: &str) -> Option<&'static Prepared> {
    let cell = match runtime {
        "java" => &JAVA,
        "go" => &GO,
        _ => return None,
    };
    cell.get().and_then(|r| r.as_ref().ok())
}

/// Build the driver of `runtime` (once per process; reused from the cache when unchanged), or
/// say why it cannot run here.
pub async fn prepare(runtime: &str) -> Result<&'static Prepared, String> {
    let (cell, build): (_, fn() -> _) = match runtime {
        "java" => (&JAVA, || Box::pin(java()) as Build),
        "go" => (&GO, || Box::pin(go()) as Build),
        other => return Err(format!("no compiled driver for {other}")),
    };
    cell.get_or_init(build).await.as_ref().map_err(Clone::clone)
}

/// Build the compiled drivers among `runtimes` concurrently (javac and go build overlap), so
/// the later per-library checks find them ready.
pub async fn prepare_all<'a>(runtimes: impl IntoIterator<Item = &'a str>) {
    let mut want: Vec<&str> = runtimes.into_iter().filter(|r| is_compiled(r)).collect();
    want.sort_unstable();
    want.dedup();
    futures::future::join_all(want.into_iter().map(prepare)).await;
}

type Build = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Prepared, String>> + Send>>;

fn cache_root() -> PathBuf {
    std::env::var_os("IDLERESET_DRIVER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("idlereset-drivers"))
}

fn java_dir() -> PathBuf {
    std::env::var_os("IDLERESET_JAVA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java"))
}

fn gopath() -> PathBuf {
    std::env::var_os("IDLERESET_GOPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/gocode"))
}

/// The cache directory for a build of `source` with `inputs` (versions, paths).
fn cache_dir(kind: &str, source: &[u8], inputs: &[String]) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    inputs.hash(&mut h);
    cache_root().join(format!("{kind}-{:016x}", h.finish()))
}

/// Run a build command; its stderr (last lines) when it fails.
async fn build(mut cmd: tokio::process::Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(4).collect();
    Err(format!(
        "{what} failed: {}",
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

/// Build into a fresh directory next to `dir` and move it into place, so concurrent runs
/// never see half a build.
async fn build_into(
    dir: &Path,
    make: impl FnOnce(&Path) -> tokio::process::Command,
    what: &str,
) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("build"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let res = build(make(&tmp), what).await;
    match res {
        Ok(()) => {
            // Another run may have finished the same build first: theirs is as good.
            if std::fs::rename(&tmp, dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

async fn java() -> Result<Prepared, String> {
    let source = drivers_dir().join("java/Driver.java");
    let text =
        std::fs::read(&source).map_err(|_| format!("driver {} not found", source.display()))?;
    let dir = java_dir();
    let mut jars = Vec::new();
    for (jar, pkg) in JARS {
        let p = dir.join(jar);
        // The versioned name behind Debian's symlink keys the cache.
        let real = std::fs::canonicalize(&p).map_err(|_| {
            format!(
                "{} is not installed (Debian {pkg}; run .ci/install-deps)",
                p.display()
            )
        })?;
        jars.push(real);
    }
    which("javac").ok_or("javac is not installed (a JDK; run .ci/install-deps)")?;
    let cp = std::env::join_paths(&jars).map_err(|e| e.to_string())?;
    let key: Vec<String> = jars.iter().map(|j| j.display().to_string()).collect();
    let out = cache_dir("java", &text, &key);
    build_into(
        &out,
        |tmp| {
            let mut c = tokio::process::Command::new("javac");
            c.arg("-nowarn")
                .arg("-d")
                .arg(tmp)
                .arg("-cp")
                .arg(&cp)
                .arg(&source);
            c
        },
        "javac Driver.java",
    )
    .await?;
    let mut run_cp = OsString::from(&out);
    run_cp.push(":");
    run_cp.push(&cp);
    let args: Vec<OsString> = [
        // A small, quick JVM: the driver holds one connection.
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xmx64m",
        "-Duser.timezone=UTC",
        // SLF4J's simple backend with timestamps, as an application log has them.
        "-Dorg.slf4j.simpleLogger.logFile=System.err",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "-cp",
    ]
    .iter()
    .map(OsString::from)
    .chain([run_cp, "Driver".into()])
    .collect();
    Ok(Prepared {
        program: which("java").ok_or("java is not installed (run .ci/install-deps)")?,
        args,
    })
}

/// Version of an installed Debian package, upstream part (`1:1.10.7-2` -> `1.10.7`).
pub fn debian_version(package: &str) -> Option<String> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").ok()?;
    let stanza = status
        .split("\n\n")
        .find(|s| s.lines().any(|l| l == format!("Package: {package}")))?;
    let v = stanza.lines().find_map(|l| l.strip_prefix("Version: "))?;
    Some(upstream(v).to_string())
}

/// The upstream part of a Debian version: no epoch, no Debian revision.
fn upstream(v: &str) -> &str {
    let v = v.split_once(':').map_or(v, |(_, r)| r);
    v.rsplit_once('-').map_or(v, |(u, _)| u)
}

async fn go() -> Result<Prepared, String> {
    let source = drivers_dir().join("go/driver.go");
    let text =
        std::fs::read(&source).map_err(|_| format!("driver {} not found", source.display()))?;
    which("go").ok_or("go is not installed (Debian golang-go; run .ci/install-deps)")?;
    let gopath = gopath();
    let mut stamps = Vec::new();
    for (pkg, var) in GO_PACKAGES {
        let v = debian_version(pkg)
            .ok_or_else(|| format!("Debian {pkg} is not installed (run .ci/install-deps)"))?;
        stamps.push(format!("-X {var}={v}"));
    }
    let go_version = tokio::process::Command::new("go")
        .arg("version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut key = stamps.clone();
    key.push(go_version);
    key.push(gopath.display().to_string());
    let out = cache_dir("go", &text, &key);
    let cache = cache_root().join("gocache");
    build_into(
        &out,
        |tmp| {
            let mut c = tokio::process::Command::new("go");
            c.args(["build", "-trimpath", "-o"])
                .arg(tmp.join("driver"))
                .arg("-ldflags")
                .arg(stamps.join(" "))
                .arg(&source)
                .env("GO111MODULE", "off")
                .env("GOPATH", &gopath)
                .env("GOPROXY", "off")
                .env("GOFLAGS", "")
                .env("GOCACHE", &cache)
                .current_dir(source.parent().unwrap_or(Path::new(".")));
            c
        },
        "go build driver.go",
    )
    .await?;
    Ok(Prepared {
        program: out.join("driver"),
        args: Vec::new(),
    })
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// The connection target for a compiled driver's module: a JDBC URL for the JVM, a key=value
/// connection string for Go.
pub fn target(module: &str, pg: &Postgres, host: IpAddr) -> J {
    match module {
        "pgjdbc" | "hikaricp" => {
            let h = match host {
                IpAddr::V6(a) => format!("[{a}]"),
                IpAddr::V4(a) => a.to_string(),
            };
            serde_json::json!({
                "url": format!("jdbc:postgresql://{h}:{}/postgres?sslmode=disable", pg.port),
                "user": pg.user,
            })
        }
        _ => serde_json::json!({
            "dsn": format!("{} connect_timeout=5 application_name=idlereset-verify", pg.conninfo(host))
        }),
    }
}

/// Settings in the library's own terms for a compiled driver's module (see the module doc).
pub fn settings(module: &str, m: &Model, scale: &dyn Fn(f64) -> u64) -> BTreeMap<String, J> {
    let mut s = BTreeMap::new();
    let secs = |x: Option<f64>| x.map(scale);
    match module {
        "pgjdbc" => {
            s.insert("tcpKeepAlive".into(), J::from(m.so_keepalive.to_string()));
        }
        "hikaricp" => {
            s.insert(
                "dataSource.tcpKeepAlive".into(),
                J::from(m.so_keepalive.to_string()),
            );
            for (k, v) in [
                ("idleTimeout", secs(m.pool_idle_s)),
                ("maxLifetime", secs(m.max_lifetime_s)),
                // HikariCP 4.0.1+; older pools reject the property at start-up, as they would
                // in the application.
                ("keepaliveTime", secs(m.heartbeat_s)),
            ] {
                if let Some(v) = v {
                    s.insert(k.into(), J::from((v * 1000).to_string()));
                }
            }
        }
        "lib-pq" | "pgx" => {
            let ka = if m.so_keepalive {
                secs(m.keepidle_s).map(|v| v as i64)
            } else {
                Some(-1)
            };
            if let Some(v) = ka {
                s.insert("KeepAlive".into(), J::from(v));
            }
            for (k, v) in [
                ("KeepAliveInterval", secs(m.keepintvl_s)),
                ("KeepAliveCount", m.keepcnt.map(u64::from)),
                ("ConnMaxIdleTime", secs(m.pool_idle_s)),
                ("ConnMaxLifetime", secs(m.max_lifetime_s)),
            ] {
                if let (Some(v), true) = (v, m.so_keepalive || k.starts_with("Conn")) {
                    s.insert(k.into(), J::from(v));
                }
            }
        }
        _ => {}
    }
    s
}

/// Whether the real library can run `m` faithfully at this time scale, or why the socket-level
/// model runs instead: a scaled pool limit below the library's minimum would be raised or
/// ignored by the library (not by the configuration being verified); PgJDBC cannot set
/// keepalive timing per socket, so a timing other than the `app` host's (the plan's sysctls)
/// cannot be run with it; and the drivers send no application heartbeat of their own.
pub fn fits(module: &str, b: &Behaviour, m: &Model, factor: f64) -> Result<(), String> {
    let lab = |s: f64| s / factor;
    for (what, v, min) in [
        ("idle timeout", m.pool_idle_s, b.min_pool_idle_s),
        ("max lifetime", m.max_lifetime_s, b.min_max_lifetime_s),
        ("ping", m.heartbeat_s, b.min_ping_s),
    ] {
        if let (Some(v), Some(min)) = (v, min)
            && v >= min
            && lab(v) < min
        {
            return Err(format!(
                "socket-level model: the pool's {what} {v} s scales to {:.1} lab s, below the library's minimum {min} s, which the real library would raise or ignore",
                lab(v)
            ));
        }
    }
    let jvm = matches!(module, "pgjdbc" | "hikaricp");
    if jvm && m.so_keepalive && m.keepidle_s.is_some() {
        return Err("socket-level model: PgJDBC cannot set keepalive timing per socket and the lab's app host carries the plan's sysctls, not this run's timing".into());
    }
    if m.heartbeat_s.is_some() && module != "hikaricp" {
        return Err("socket-level model: the run needs an application heartbeat, which the driver program does not send".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            so_keepalive: true,
            keepidle_s: Some(30.0),
            keepintvl_s: Some(5.0),
            keepcnt: Some(5),
            user_timeout_ms: None,
            pool_idle_s: Some(30.0),
            max_lifetime_s: Some(45.0),
            heartbeat_s: None,
            how: String::new(),
        }
    }

    #[test]
    fn go_and_jvm_settings_in_library_terms() {
        let id = |s: f64| s as u64;
        let g = settings("pgx", &model(), &id);
        assert_eq!(g["KeepAlive"], J::from(30));
        assert_eq!(g["KeepAliveInterval"], J::from(5));
        assert_eq!(g["KeepAliveCount"], J::from(5));
        assert_eq!(g["ConnMaxLifetime"], J::from(45));
        let off = Model {
            so_keepalive: false,
            ..model()
        };
        let g = settings("lib-pq", &off, &id);
        assert_eq!(g["KeepAlive"], J::from(-1));
        assert!(!g.contains_key("KeepAliveInterval"));
        assert_eq!(g["ConnMaxIdleTime"], J::from(30));
        let h = settings("hikaricp", &model(), &id);
        assert_eq!(h["maxLifetime"], J::from("45000"));
        assert_eq!(h["dataSource.tcpKeepAlive"], J::from("true"));
        assert!(!h.contains_key("keepaliveTime"));
        assert_eq!(
            settings("pgjdbc", &off, &id)["tcpKeepAlive"],
            J::from("false")
        );
    }

    #[test]
    fn scaled_pool_limits_below_the_library_minimum_fall_back_to_the_model() {
        let b = idlereset_core::libraries::Libraries::builtin()
            .profile(idlereset_core::inventory::Library::Hikaricp, None)
            .behaviour;
        let m = Model {
            keepidle_s: None,
            ..model()
        };
        assert!(fits("hikaricp", b, &m, 1.0).is_ok());
        let why = fits("hikaricp", b, &m, 10.0).expect_err("30 s / 10 < 10 s minimum");
        assert!(why.contains("idle timeout"), "{why}");
        let no_idle = Model {
            pool_idle_s: None,
            ..m.clone()
        };
        assert!(
            fits("hikaricp", b, &no_idle, 1.2).is_ok(),
            "45 s / 1.2 >= 30 s"
        );
        let why = fits("hikaricp", b, &no_idle, 2.0).expect_err("45 s / 2 < 30 s minimum");
        assert!(why.contains("max lifetime"), "{why}");
        assert!(
            fits("pgjdbc", b, &model(), 1.0).is_err(),
            "per-socket timing"
        );
        let hb = Model {
            heartbeat_s: Some(10.0),
            ..model()
        };
        assert!(fits("pgx", b, &hb, 1.0).is_err());
    }

    #[test]
    fn debian_versions_lose_epoch_and_revision() {
        assert_eq!(upstream("2:1.19~1"), "1.19~1");
        assert_eq!(upstream("4.15.0-4"), "4.15.0");
        assert_eq!(upstream("42.5.5-0+deb12u1"), "42.5.5");
        assert_eq!(upstream("1.0"), "1.0");
    }
}
