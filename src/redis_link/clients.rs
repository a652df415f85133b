//! Where Redis is and how to reach it: the seed nodes with their TLS settings, the cluster
//! client built from them, and what `CLUSTER NODES` says about the cluster's shape.

use std::fmt;

use deadpool_redis::redis::{
    self,
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo, TlsCertificates,
};

use super::{RedisError, DEADLINE};
use crate::config::{redact_password, RedisCa, RedisUrl};

/// Attempts per cluster command (after `MOVED`, `ASK`, `TRYAGAIN` or a lost node) before it fails;
/// few and quick, since every caller also has [`DEADLINE`].
const CLUSTER_RETRIES: u32 = 3;

/// A node's `host:port`, as `CLUSTER NODES` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// Host name or IP address.
    pub host: String,
    /// Client port.
    pub port: u16,
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The seed nodes, each as its URL (for the cluster client) and its connection info (with the
/// certificate authority applied, for one Redis).
#[derive(Clone)]
pub struct Target {
    urls: Vec<String>,
    first: ConnectionInfo,
    infos: Vec<ConnectionInfo>,
    ca: Option<Vec<u8>>,
    tls: bool,
}

impl Target {
    /// Reads the seeds; a URL or certificate the Redis client cannot use is a configuration error.
    pub fn new(url: &RedisUrl, ca: Option<&RedisCa>) -> Result<Self, RedisError> {
        let ca = ca.map(|ca| ca.pem().to_vec());
        let infos = url
            .nodes()
            .iter()
            .map(|node| match &ca {
                Some(pem) => redis::Client::build_with_tls(node.as_str(), certificates(pem))
                    .map(|client| client.get_connection_info().clone()),
                None => node.as_str().into_connection_info(),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(RedisError::Config)?;
        let first = infos.first().cloned().ok_or_else(|| {
            RedisError::Config(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis node")))
        })?;
        Ok(Self { urls: url.nodes().to_vec(), first, infos, ca, tls: url.is_tls() })
    }

    /// The first seed.
    pub fn first(&self) -> &ConnectionInfo {
        &self.first
    }

    /// How many seeds were given.
    pub fn seed_count(&self) -> usize {
        self.urls.len()
    }

    /// The seeds followed by `known` nodes (learned from the cluster), reached alike.
    pub fn with_known(&self, known: &[NodeAddress]) -> Self {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let mut target = self.clone();
        target.urls.extend(known.iter().map(|node| format!("{scheme}://{node}")));
        target
    }

    /// Asks the seeds, in order, whether they run in cluster mode; the first that answers decides.
    pub async fn detect_cluster(&self) -> Result<bool, RedisError> {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(DEADLINE)).set_response_timeout(Some(DEADLINE));
        let mut last = None;
        for (url, info) in self.urls.iter().zip(&self.infos) {
            let answer = async {
                let client = redis::Client::open(info.clone())?;
                let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
                redis::cmd("INFO").arg("cluster").query_async::<String>(&mut conn).await
            };
            match answer.await {
                Ok(info) => {
                    let cluster = info.lines().any(|l| l.trim() == "cluster_enabled:1");
                    if !cluster && self.urls.len() > 1 {
                        return Err(RedisError::NotACluster(redact_password(url)));
                    }
                    return Ok(cluster);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(RedisError::Connect(last.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no seed")))))
    }

    /// A connection to the cluster; with `pushes`, on RESP3 with its pushes sent there.
    pub async fn cluster_connection(
        &self,
        pushes: Option<tokio::sync::mpsc::UnboundedSender<PushInfo>>,
    ) -> Result<ClusterConnection, RedisError> {
        let mut builder = ClusterClientBuilder::new(self.urls.clone())
            .connection_timeout(DEADLINE)
            .response_timeout(DEADLINE)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(50)
            .max_retry_wait(500);
        if let Some(pem) = &self.ca {
            builder = builder.certs(certificates(pem));
        }
        if let Some(pushes) = pushes {
            builder = builder.use_protocol(ProtocolVersion::RESP3).push_sender(pushes);
        }
        let client = builder.build().map_err(RedisError::Config)?;
        match tokio::time::timeout(DEADLINE * 2, client.get_async_connection()).await {
            Ok(conn) => conn.map_err(RedisError::Connect),
            Err(_) => Err(RedisError::Timeout),
        }
    }
}

fn certificates(pem: &[u8]) -> TlsCertificates {
    TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) }
}

/// `PING` on every primary serving slots, through `conn`; the nodes the cluster knows of, when
/// all answered. A shard whose primary failed is down until a replica took over.
pub async fn ping_primaries(mut conn: ClusterConnection) -> Result<Vec<NodeAddress>, RedisError> {
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await.map_err(RedisError::Command)?;
    let pings = serving_primaries(&nodes).into_iter().map(|node| {
        let mut conn = conn.clone();
        let name = node.to_string();
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: node.host, port: node.port });
        async move { conn.route_command(redis::cmd("PING"), route).await.map_err(|_| RedisError::ShardDown(name)) }
    });
    futures_util::future::try_join_all(pings).await?;
    Ok(node_addresses(&nodes))
}

/// One line of `CLUSTER NODES`: its address, whether it is a primary, whether it serves slots.
fn parse_node(line: &str) -> Option<(NodeAddress, bool, bool)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let address = fields.get(1)?.split(['@', ',']).next()?;
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p != 0)?;
    let primary = fields.get(2)?.split(',').any(|flag| flag == "master");
    let serves = fields.len() > 8;
    Some((NodeAddress { host: host.to_owned(), port }, primary, serves))
}

/// Every node `CLUSTER NODES` lists.
fn node_addresses(nodes: &str) -> Vec<NodeAddress> {
    nodes.lines().filter_map(parse_node).map(|(address, _, _)| address).collect()
}

/// The primaries that own slots, failed ones included: a shard is down until one took over.
fn serving_primaries(nodes: &str) -> Vec<NodeAddress> {
    nodes.lines().filter_map(parse_node).filter(|(_, primary, serves)| *primary && *serves).map(|(a, _, _)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master - 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 :0@0 master,noaddr - 0 0 0 disconnected";

    #[test]
    fn cluster_nodes_are_read() {
        let port = |list: Vec<NodeAddress>| list.into_iter().map(|a| a.port).collect::<Vec<_>>();
        assert_eq!(port(node_addresses(NODES)), vec![30004, 30002, 30003, 30001, 30005]);
        assert_eq!(port(serving_primaries(NODES)), vec![30002, 30003, 30001]);
        assert_eq!(node_addresses(NODES)[0].to_string(), "127.0.0.1:30004");
    }

    #[test]
    fn learned_nodes_follow_the_seeds_with_their_scheme() {
        let url = RedisUrl::parse("rediss://:pw@a:7000").unwrap_or_else(|e| panic!("{e}"));
        let target = Target::new(&url, None).unwrap_or_else(|e| panic!("{e}"));
        let known = target.with_known(&[NodeAddress { host: "b".into(), port: 7001 }]);
        assert_eq!(known.urls, vec!["rediss://:pw@a:7000".to_owned(), "rediss://b:7001".to_owned()]);
        assert_eq!(known.seed_count(), 2);
    }
}
