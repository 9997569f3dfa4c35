//! Links, addresses and routes inside a network namespace, over rtnetlink.
//!
//! An [`Rtnl`] is an rtnetlink connection whose socket was opened on a thread inside the target
//! namespace, so every request it sends configures that namespace. The socket is registered
//! with the caller's tokio runtime, so it must be created from within one.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::AddressFlags;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{LinuxError, Result};
use crate::netns::NetNs;

/// An rtnetlink handle bound to one namespace.
pub struct Rtnl {
    handle: rtnetlink::Handle,
    ns: String,
}

fn nl_err(op: &'static str, object: String, e: rtnetlink::Error) -> LinuxError {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.code.is_some() => LinuxError::NetlinkErrno {
            op,
            object,
            errno: m.to_io(),
        },
        other => LinuxError::Netlink {
            op,
            object,
            message: other.to_string(),
        },
    }
}

impl Rtnl {
    /// Open an rtnetlink connection inside `ns`. Must be called within a tokio runtime.
    pub fn connect(ns: &NetNs) -> Result<Rtnl> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns
            .run(move || {
                let _guard = rt.enter();
                rtnetlink::new_connection()
            })?
            .map_err(|e| LinuxError::socket("open rtnetlink", ns.name().to_string(), e))?;
        tokio::spawn(conn);
        Ok(Rtnl {
            handle,
            ns: ns.name().to_string(),
        })
    }

    fn obj(&self, what: &str) -> String {
        format!("{}/{}", self.ns, what)
    }

    /// Index of the link called `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(msg.header.index),
            Ok(None) => Err(LinuxError::Netlink {
                op: "find link",
                object: self.obj(name),
                message: "no such link".into(),
            }),
            Err(e) => Err(nl_err("find link", self.obj(name), e)),
        }
    }

    /// Create a veth pair: `name` in this namespace, `peer` directly in `peer_ns` (it never
    /// appears anywhere else, in particular not in the host's namespace).
    pub async fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_ns: &NetNs,
        alias: &str,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(peer_ns.file().as_raw_fd())
            .alias(alias.to_string())
            .build();
        let builder = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(name.to_string())
            .alias(alias.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)));
        self.handle
            .link()
            .add(builder.build())
            .execute()
            .await
            .map_err(|e| {
                nl_err(
                    "add veth",
                    self.obj(&format!("{name}<->{}/{peer}", peer_ns.name())),
                    e,
                )
            })
    }

    /// Bring a link up.
    pub async fn set_up(&self, name: &str) -> Result<()> {
        let index = self.link_index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| nl_err("set link up", self.obj(name), e))
    }

    /// Add an address to a link. IPv6 addresses skip duplicate address detection so they are
    /// usable at once.
    pub async fn add_address(&self, ifname: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        let index = self.link_index(ifname).await?;
        let mut req = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            req.message_mut().attributes.push(
                netlink_packet_route::address::AddressAttribute::Flags(AddressFlags::Nodad),
            );
        }
        req.execute().await.map_err(|e| {
            nl_err(
                "add address",
                self.obj(&format!("{ifname} {addr}/{prefix}")),
                e,
            )
        })
    }

    /// Add a route to `dest/prefix` via `gateway`.
    pub async fn add_route(&self, dest: IpAddr, prefix: u8, gateway: IpAddr) -> Result<()> {
        let msg = route_msg(dest, prefix, gateway)?;
        self.handle.route().add(msg).execute().await.map_err(|e| {
            nl_err(
                "add route",
                self.obj(&format!("{dest}/{prefix} via {gateway}")),
                e,
            )
        })
    }

    /// Delete the route to `dest/prefix` via `gateway` (the counterpart of [`Rtnl::add_route`]).
    pub async fn del_route(&self, dest: IpAddr, prefix: u8, gateway: IpAddr) -> Result<()> {
        let msg = route_msg(dest, prefix, gateway)?;
        self.handle.route().del(msg).execute().await.map_err(|e| {
            nl_err(
                "delete route",
                self.obj(&format!("{dest}/{prefix} via {gateway}")),
                e,
            )
        })
    }

    /// Names of the links in this namespace.
    pub async fn link_names(&self) -> Result<Vec<String>> {
        let mut links = self.handle.link().get().execute();
        let mut names = Vec::new();
        while let Some(msg) = links
            .try_next()
            .await
            .map_err(|e| nl_err("list links", self.obj("*"), e))?
        {
            for a in msg.attributes {
                if let LinkAttribute::IfName(n) = a {
                    names.push(n);
                }
            }
        }
        Ok(names)
    }

    /// Delete a link (a veth pair goes away with either end).
    pub async fn del_link(&self, name: &str) -> Result<()> {
        let index = self.link_index(name).await?;
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| nl_err("delete link", self.obj(name), e))
    }
}

/// The route message for `dest/prefix` via `gateway` (both of one address family).
fn route_msg(
    dest: IpAddr,
    prefix: u8,
    gateway: IpAddr,
) -> Result<netlink_packet_route::route::RouteMessage> {
    match (dest, gateway) {
        (IpAddr::V4(d), IpAddr::V4(g)) => Ok(RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(d, prefix)
            .gateway(g)
            .build()),
        (IpAddr::V6(d), IpAddr::V6(g)) => Ok(RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(d, prefix)
            .gateway(g)
            .build()),
        _ => Err(LinuxError::Unsupported(format!(
            "route {dest}/{prefix} via {gateway}: address families differ"
        ))),
    }
}
