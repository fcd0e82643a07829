//! Transport: ROS 2 over DDS through `ros2-client`. Nothing in here knows about coins; the
//! algorithm modules know nothing about DDS.

pub mod discovery;
pub mod names;
pub mod netns;
pub mod qos;
#[cfg(feature = "r2r")]
pub mod rcl;
pub mod rosout;
pub mod throttle;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use discovery::DiscoveryRange;
use ros2_client::dds::rustdds::DomainParticipantBuilder;
use ros2_client::service::{Client, Server, ServiceMapping};
use ros2_client::{Context, MessageTypeName, Name, Node, NodeName, NodeOptions};
use ros2_client::{Message, Publisher, QosProfile, ServiceTypeName, Subscription};

use crate::msgs::RosMessage;
use crate::msgs::rcl_interfaces::Log;
use crate::params::RosArgs;

/// The DDS domain from `ROS_DOMAIN_ID` (default 0); an invalid value is an error naming it.
pub fn domain_id_from_env() -> Result<u16> {
    match std::env::var("ROS_DOMAIN_ID") {
        Ok(v) if !v.trim().is_empty() => {
            let id: u16 =
                v.trim().parse().with_context(|| format!("ROS_DOMAIN_ID {v:?} is not a number"))?;
            if id > 232 {
                return Err(anyhow!("ROS_DOMAIN_ID {id} is above 232, the largest DDS allows"));
            }
            Ok(id)
        }
        _ => Ok(0),
    }
}

/// A ROS 2 node with its name, namespace and remappings, that creates typed publishers and
/// subscriptions on resolved topic names.
pub struct RosNode {
    node: Node,
    name: String,
    namespace: String,
    remaps: Vec<(String, String)>,
    spinner: Option<tokio::task::JoinHandle<()>>,
    _context: Context,
}

impl RosNode {
    /// Joins the ROS 2 graph as `/namespace/name` (after `--ros-args` overrides) on the
    /// domain `ROS_DOMAIN_ID` names, and starts the node's spinner on the current tokio
    /// runtime.
    /// The first node of a process also publishes the process's logs on `/rosout`.
    pub fn new(default_name: &str, args: &RosArgs) -> Result<Self> {
        Self::with_options(default_name, args, NodeOptions::new())
    }

    /// Like [`RosNode::new`] with `options` (declared parameters, parameter services).
    pub fn with_options(default_name: &str, args: &RosArgs, options: NodeOptions) -> Result<Self> {
        let mut node = Self::create(default_name, args, domain_id_from_env()?, options)?;
        node.forward_logs()?;
        Ok(node)
    }

    /// Publishes this process's `tracing` events on `/rosout` under this node's name, unless
    /// another node of the process already does.
    pub fn forward_logs(&mut self) -> Result<()> {
        let Some(lines) = rosout::start(&self.fully_qualified_name()) else { return Ok(()) };
        let publisher = self.publisher::<Log>("/rosout", qos::rosout())?;
        // A plain thread: the channel's receiving end blocks, and it must outlive any one
        // async task.
        std::thread::Builder::new()
            .name("rosout".into())
            .spawn(move || {
                for log in lines {
                    if publisher.publish(log).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the /rosout thread")?;
        Ok(())
    }

    /// Like [`RosNode::new`] on an explicit DDS domain.
    pub fn in_domain(default_name: &str, args: &RosArgs, domain: u16) -> Result<Self> {
        Self::create(default_name, args, domain, NodeOptions::new())
    }

    fn create(
        default_name: &str,
        args: &RosArgs,
        domain: u16,
        options: NodeOptions,
    ) -> Result<Self> {
        let name = args.node_name.clone().unwrap_or_else(|| default_name.to_string());
        let namespace = names::normalise_namespace(args.namespace.as_deref().unwrap_or("/"))?;
        let (range, warnings) = discovery::from_env();
        for w in warnings {
            tracing::warn!("{w}");
        }
        let mut participant = DomainParticipantBuilder::new(domain);
        if range == DiscoveryRange::Localhost {
            participant = participant.with_only_networks([std::net::Ipv4Addr::LOCALHOST]);
        }
        let participant = participant
            .build()
            .map_err(|e| anyhow!("cannot start DDS on domain {domain}: {e:?}"))?;
        let context = Context::from_domain_participant(participant)
            .map_err(|e| anyhow!("cannot start ROS 2 on DDS domain {domain}: {e:?}"))?;
        let mut node = context
            .new_node(
                NodeName::new(&namespace, &name)
                    .map_err(|e| anyhow!("bad node name {name:?}: {e:?}"))?,
                // Our own /rosout publisher carries the logs (see `rosout`).
                options.enable_rosout(false),
            )
            .map_err(|e| anyhow!("cannot create node {name}: {e:?}"))?;
        let spinner = node.spinner().map_err(|e| anyhow!("cannot start spinner: {e:?}"))?;
        let spinner = tokio::spawn(async move {
            if let Err(e) = spinner.spin().await {
                tracing::error!("ROS 2 spinner stopped: {e:?}; graph events are no longer seen");
            }
        });
        Ok(Self {
            node,
            name,
            namespace,
            remaps: args.remaps.clone(),
            spinner: Some(spinner),
            _context: context,
        })
    }

    /// Leaves the graph in order: the spinner (which owns the node's service endpoints)
    /// stops before the DDS participant goes, so peers are told and nothing is torn down
    /// twice. Publishers and subscriptions should be dropped before calling this.
    pub async fn shutdown(self) {
        let Self { node, spinner, _context: context, .. } = self;
        // Dropping the node is what tells its spinner to stop.
        drop(node);
        if let Some(handle) = spinner
            && tokio::time::timeout(Duration::from_secs(2), handle).await.is_err()
        {
            tracing::warn!("ROS 2 spinner did not stop within 2 s; leaving anyway");
        }
        drop(context);
    }

    /// The node's fully qualified name, `/ns/name`.
    pub fn fully_qualified_name(&self) -> String {
        if self.namespace == "/" {
            format!("/{}", self.name)
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// Resolves a topic name for this node (see [`names::resolve`]).
    pub fn resolve(&self, topic: &str) -> Result<String> {
        names::resolve(topic, &self.namespace, &self.name, &self.remaps)
    }

    fn topic<T: RosMessage>(
        &self,
        topic: &str,
        qos: &QosProfile,
    ) -> Result<(String, ros2_client::dds::rustdds::Topic)> {
        let full = self.resolve(topic)?;
        let name = Name::parse(&full).map_err(|e| anyhow!("bad topic name {full:?}: {e:?}"))?;
        let t = self
            .node
            .create_topic(&name, MessageTypeName::new(T::PACKAGE, T::NAME), qos)
            .map_err(|e| anyhow!("cannot create topic {full}: {e:?}"))?;
        Ok((full, t))
    }

    /// A publisher of `T` on `topic` (resolved and remapped).
    pub fn publisher<T: RosMessage>(
        &mut self,
        topic: &str,
        qos: QosProfile,
    ) -> Result<Publisher<T>> {
        let (full, t) = self.topic::<T>(topic, &qos)?;
        self.node
            .create_publisher::<T>(&t, Some(qos))
            .map_err(|e| anyhow!("cannot publish {full}: {e:?}"))
    }

    /// A subscription to `T` on `topic` (resolved and remapped).
    pub fn subscription<T: RosMessage>(
        &mut self,
        topic: &str,
        qos: QosProfile,
    ) -> Result<Subscription<T>> {
        let (full, t) = self.topic::<T>(topic, &qos)?;
        self.node
            .create_subscription::<T>(&t, Some(qos))
            .map_err(|e| anyhow!("cannot subscribe {full}: {e:?}"))
    }

    /// A service server for `srv_type` (`(package, name)`) on `service` (resolved and
    /// remapped), with the request/reply mapping ROS 2 Humble and later use.
    pub fn server<Req: Message + Clone + 'static, Resp: Message + 'static>(
        &mut self,
        service: &str,
        srv_type: (&str, &str),
    ) -> Result<Server<Req, Resp>> {
        let (full, name, ty) = self.service(service, srv_type)?;
        let qos = qos::service();
        self.node
            .create_server(ServiceMapping::Enhanced, &name, &ty, qos.clone(), qos)
            .map_err(|e| anyhow!("cannot serve {full}: {e:?}"))
    }

    /// A client of the service `service` (resolved and remapped); see [`RosNode::server`].
    pub fn client<Req: Message + Clone + 'static, Resp: Message + 'static>(
        &mut self,
        service: &str,
        srv_type: (&str, &str),
    ) -> Result<Client<Req, Resp>> {
        let (full, name, ty) = self.service(service, srv_type)?;
        let qos = qos::service();
        self.node
            .create_client(ServiceMapping::Enhanced, &name, &ty, qos.clone(), qos)
            .map_err(|e| anyhow!("cannot call {full}: {e:?}"))
    }

    /// The resolved name of `service` and its type name.
    fn service(
        &self,
        service: &str,
        srv_type: (&str, &str),
    ) -> Result<(String, Name, ServiceTypeName)> {
        let full = self.resolve(service)?;
        let name = Name::parse(&full).map_err(|e| anyhow!("bad service name {full:?}: {e:?}"))?;
        Ok((full, name, ServiceTypeName::new(srv_type.0, srv_type.1)))
    }

    /// Waits until `topic` (resolved) has at least `n` subscriptions, or `timeout` passes;
    /// returns the count seen last.
    pub async fn wait_for_subscribers(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<usize> {
        let full = self.resolve(topic)?;
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.node.subscription_count(&full);
            if count >= n || Instant::now() >= deadline {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The underlying `ros2-client` node.
    pub fn inner(&self) -> &Node {
        &self.node
    }
}

/// Named event counters for `/diagnostics`, shared between the node's tasks.
#[derive(Debug, Clone, Default)]
pub struct Counters(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counters {
    /// Counters that start at zero for each of `keys`.
    pub fn with_keys(keys: &[&str]) -> Self {
        Self(Arc::new(Mutex::new(keys.iter().map(|k| (k.to_string(), 0)).collect())))
    }

    /// Adds `n` to counter `key`.
    pub fn add(&self, key: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key.to_string()).or_default() += n;
        }
    }

    /// The current value of `key` (0 when never counted).
    pub fn get(&self, key: &str) -> u64 {
        self.0.lock().map(|m| m.get(key).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
