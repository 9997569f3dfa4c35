//! The real database servers a `verify` run talks to, started in the lab's `db` namespace:
//! PostgreSQL, redis-server and the gRPC server, each only when a client needs it and it is
//! installed. Kept apart from the runs so what the lab starts, and what it notes as missing,
//! is read in one place.

use std::time::Duration;

use idlereset_core::inventory::{Inventory, IpVersion, Library};
use idlereset_core::libraries::Libraries;
use idlereset_core::plan::clients::ClientPlan;

use super::{Db, Drivers, Options, PG_PORT};
use crate::error::{LabError, Result};
use crate::grpc::GrpcServer;
use crate::lab::Lab;
use crate::postgres::{self, PgOptions, Postgres};
use crate::redis::{self as redis_server, Redis};

/// The real database servers the runs need, in the db namespace (stopped when dropped).
pub(super) struct Databases {
    pub(super) db_addr: std::net::IpAddr,
    pub(super) pg: Option<(Postgres, std::path::PathBuf)>,
    pub(super) redis: Option<Redis>,
    pub(super) grpc: Option<GrpcServer>,
}

impl Databases {
    /// PostgreSQL when libpq or a real postgres driver runs (and it is installed, or `--db
    /// postgres` asks), redis-server when a real Redis driver runs, the gRPC server when grpcio
    /// runs; what is missing is noted.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        lab: &Lab,
        inv: &Inventory,
        opts: &Options,
        clients: &[&ClientPlan],
        drivers: &Drivers,
        idle_close: Option<Duration>,
        notes: &mut Vec<String>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Databases> {
        let db_ns = lab.ns("db")?;
        let protocol_of = |l: Library| {
            Libraries::builtin()
                .profile(l, None)
                .library
                .protocol
                .clone()
        };
        let real = |l: Library| drivers.get(&l).is_some_and(|d| d.is_ok());
        let want_pg = clients.iter().any(|c| {
            c.library == Library::Libpq || (real(c.library) && protocol_of(c.library) == "postgres")
        });
        let want_redis = clients
            .iter()
            .any(|c| real(c.library) && protocol_of(c.library) == "redis");
        let want_grpc = clients
            .iter()
            .any(|c| real(c.library) && protocol_of(c.library) == "grpc");
        let pg_tools = postgres::Binaries::find().zip(postgres::find_psql());
        let pg = match (opts.db, &pg_tools) {
            (Db::Builtin, _) => None,
            (Db::Postgres, None) => {
                return Err(LabError::lab(
                    lab.name(),
                    "--db postgres: PostgreSQL (initdb, postgres, psql) is not installed; run .ci/install-deps",
                ));
            }
            (Db::Auto, None) => {
                notes.push("PostgreSQL is not installed: libpq settings verified as socket options on the built-in server".into());
                None
            }
            (_, Some(_)) if !want_pg && opts.db == Db::Auto => None,
            (_, Some((_, psql_path))) => {
                progress("starting PostgreSQL in the db namespace");
                let pg_opts = PgOptions {
                    port: PG_PORT,
                    idle_session_timeout: idle_close,
                    parent: None,
                };
                Some((
                    Postgres::start(db_ns, lab.name(), &pg_opts)?,
                    psql_path.clone(),
                ))
            }
        };
        let db_addr = lab
            .topology()
            .db_addr(inv.options.ip_version == IpVersion::V6);
        let redis = match (want_redis, redis_server::find()) {
            (true, Some(_)) => {
                progress("starting redis-server in the db namespace");
                Some(Redis::start(db_ns, lab.name(), db_addr)?)
            }
            (true, None) => {
                notes.push("redis-server is not installed: Redis clients verified with the socket-level model".into());
                None
            }
            _ => None,
        };
        // The grpcio driver is available, so python3 and grpcio are: the server needs nothing else.
        let grpc = if want_grpc {
            progress("starting the gRPC server (grpcio) in the db namespace");
            Some(GrpcServer::start(db_ns, lab.name(), db_addr)?)
        } else {
            None
        };
        Ok(Databases {
            db_addr,
            pg,
            redis,
            grpc,
        })
    }
}
