//! Links, addresses and routes over rtnetlink, in the namespace of the
//! calling thread (a connection's socket belongs to the namespace it was
//! opened in).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::NetError;

/// A netlink handle in the current thread's namespace; the connection task
/// runs on the current tokio runtime and ends when the handle is dropped.
pub fn connect() -> Result<Handle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetError::Netlink {
        op: "open a netlink socket".into(),
        message: e.to_string(),
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let op = op.into();
    move |e| NetError::Netlink {
        op,
        message: e.to_string(),
    }
}

/// The errno of a netlink error reply, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// The link called `name`, if there is one.
pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    let mut links = h.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(m) => Ok(m),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("look up link {name}"))(e)),
    }
}

pub fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Every link: (index, name, bridge it is a port of).
pub async fn links(h: &Handle) -> Result<Vec<(u32, String, Option<u32>)>, NetError> {
    let msgs: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links"))?;
    Ok(msgs
        .iter()
        .map(|m| {
            let controller = m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(c) => Some(*c),
                _ => None,
            });
            (
                m.header.index,
                link_name(m).unwrap_or_default().to_string(),
                controller,
            )
        })
        .collect())
}

/// Delete the link called `name`; absent is fine.
pub async fn delete_link(h: &Handle, name: &str) -> Result<(), NetError> {
    let Some(link) = link_by_name(h, name).await? else {
        return Ok(());
    };
    match h.link().del(link.header.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl(format!("delete link {name}"))(e)),
    }
}

/// The bridge `name` with `gateway/prefix` on it, up (made if missing).
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
    mtu: u32,
) -> Result<u32, NetError> {
    let index = match link_by_name(h, name).await? {
        Some(l) => l.header.index,
        None => {
            match h
                .link()
                .add(LinkBridge::new(name).mtu(mtu).build())
                .execute()
                .await
            {
                Ok(()) => {}
                // Made by a concurrent caller in the meantime.
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl(format!("create bridge {name}"))(e)),
            }
            link_by_name(h, name)
                .await?
                .ok_or_else(|| NetError::Netlink {
                    op: format!("create bridge {name}"),
                    message: "the bridge is not there after creating it".into(),
                })?
                .header
                .index
        }
    };
    h.address()
        .add(index, IpAddr::V4(gateway), prefix)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("put {gateway}/{prefix} on {name}")))?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("set {name} up")))?;
    Ok(index)
}

/// A veth pair: `host` here, `peer` (named `peer_name`) moved at once into
/// the namespace open at `peer_ns_fd`.
pub async fn add_veth_pair(
    h: &Handle,
    host: &str,
    peer_name: &str,
    peer_ns_fd: RawFd,
    mtu: u32,
) -> Result<(), NetError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer_name)
        .mtu(mtu)
        .setns_by_fd(peer_ns_fd)
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host)
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(nl(format!("create veth pair {host}/{peer_name}")))
}

/// Attach `port` to the bridge, hairpin on (a pod reaching itself through a
/// Service address comes back on the port it left), and up.
pub async fn attach_to_bridge(h: &Handle, port: u32, bridge: u32) -> Result<(), NetError> {
    h.link()
        .set(LinkUnspec::new_with_index(port).controller(bridge).build())
        .execute()
        .await
        .map_err(nl("attach a veth to the bridge"))?;
    h.link()
        .set_port(LinkBridgePort::new(port).hairpin(true).build())
        .execute()
        .await
        .map_err(nl("set hairpin mode on a bridge port"))?;
    h.link()
        .set(LinkUnspec::new_with_index(port).up().build())
        .execute()
        .await
        .map_err(nl("set a veth up"))
}

/// Inside a pod's namespace: lo up, `ifname` up with `ip/prefix`, and the
/// default route via `gateway`. Safe to repeat.
pub async fn configure_pod_side(
    h: &Handle,
    ifname: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    if let Some(lo) = link_by_name(h, "lo").await? {
        h.link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(nl("set lo up"))?;
    }
    let link = link_by_name(h, ifname)
        .await?
        .ok_or_else(|| NetError::Netlink {
            op: format!("configure {ifname}"),
            message: "no such interface in the pod's namespace".into(),
        })?;
    let index = link.header.index;
    h.address()
        .add(index, IpAddr::V4(ip), prefix)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("put {ip}/{prefix} on {ifname}")))?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("set {ifname} up")))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(gateway)
        .output_interface(index)
        .build();
    h.route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("add the default route via {gateway}")))
}

/// The interface of the IPv4 default route in the main table, if any.
pub async fn default_route_link(h: &Handle) -> Result<Option<u32>, NetError> {
    let routes: Vec<_> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes"))?;
    Ok(routes
        .iter()
        .filter(|r| {
            r.header.destination_prefix_length == 0
                && (r.header.table == RouteHeader::RT_TABLE_MAIN
                    || r.attributes.contains(&RouteAttribute::Table(254)))
        })
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        }))
}

/// The IPv4 addresses on link `index`.
pub async fn ipv4_addresses(h: &Handle, index: u32) -> Result<Vec<Ipv4Addr>, NetError> {
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    Ok(addrs
        .iter()
        .filter(|a| a.header.family == AddressFamily::Inet)
        .filter_map(|a| {
            a.attributes.iter().find_map(|at| match at {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        })
        .collect())
}

/// The MTU of link `index`.
pub async fn mtu_of(h: &Handle, index: u32) -> Result<Option<u32>, NetError> {
    let mut links = h.link().get().match_index(index).execute();
    let link = links.try_next().await.map_err(nl("look up a link"))?;
    Ok(link.and_then(|l| {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    }))
}
