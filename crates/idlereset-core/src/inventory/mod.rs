//! Path inventories: the hops between clients and a server, and the clients that cross them.
//!
//! One TOML file describes a path; `plan` computes settings for it, `audit` and `exporter` use
//! it to know which timeout applies to a socket's remote ([`Inventory::path_timeout_for`]), and
//! the lab's `verify` rebuilds it. The format:
//!
//! ```toml
//! name = "app to orders-db"            # optional
//! server = "postgres 198.18.2.10:5432" # optional
//!
//! [[hop]]                          # in order from the clients to the server
//! name = "dc-firewall"
//! kind = "firewall"                # firewall | nat | load-balancer | proxy
//! idle_timeout_s = 900
//! failure = "reset"                # reset | drop | fin | unknown (default unknown)
//! honours_keepalive = true         # default: false for proxy, true otherwise
//! matches = ["198.18.2.0/24:5432", "[2001:db8:2::]/64:5432"]   # optional, default: every remote
//! asymmetric = true                # optional: a flow's two directions can take different paths
//! failover = "nat-b"               # optional: the path the flow moves to on a failover
//!
//! [[hop]]
//! catalog = "aws-nat-gateway"      # idle_timeout_s, failure, honours_keepalive, kind from the catalog;
//!                                  # explicit fields override (within the documented range)
//!
//! [[client]]
//! name = "orders-api"
//! library = "hikaricp"   # libpq pgjdbc hikaricp node-pg pgx lib-pq redis-py ioredis go-redis
//!                        # grpcio grpc-go grpc-java grpc-js go java python raw (data/libraries.toml)
//! version = "2.7.9"      # optional; default: the version the data file assumes (said in the plan)
//! connections = 40       # all instances together; default 1
//! current = { keepalive = false, pool_idle_timeout_s = 3600 }   # optional, what runs today
//!
//! [plan]                 # optional
//! probes = 5             # TCP_KEEPCNT to plan with
//! ip_version = 4         # 4 | 6, for packet sizes in the cost
//! ```
//!
//! `current` accepts `keepalive`, `keepalive_time_s`, `keepalive_intvl_s`, `keepalive_probes`,
//! `pool_idle_timeout_s`, `max_lifetime_s`, `heartbeat_s`. The `matches` syntax is described in
//! [`mod@matches`].

pub mod matches;
pub mod model;
pub mod validate;

pub use matches::{Match, MatchError};
pub use model::{
    Client, Current, Hop, HopKind, Inventory, IpVersion, Library, MAX_CONNECTIONS, Options,
    OtherPath,
};
pub use validate::{Diagnostic, InventoryError};
