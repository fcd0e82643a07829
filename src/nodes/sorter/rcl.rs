//! The sorter on rcl through r2r (cargo feature `r2r`), for sourced ROS 2 workspaces: any RMW,
//! and rcl's remapping, parameter files, `/rosout` and `ros2 param` as for any ROS 2 node.
//! Everything past receiving a frame is [`super::worker`], shared with the default backend.
//!
//! r2r generates Rust types at build time for the interfaces of the sourced workspace. This
//! adapter needs only `sensor_msgs` typed (images in, the debug image out); this package's own
//! messages, `vision_msgs` and `diagnostic_msgs` go through untyped publishers as CDR bytes,
//! so it compiles against r2r's bundled bindings too. The `~/enable` and `~/reload_model`
//! services need `std_srvs`, which build.rs looks for in the workspace (cfg
//! `coin_sorter_std_srvs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use r2r::{Parameter, ParameterValue, PublisherUntyped, RosParams};

use super::worker::{Outlets, Pending};
use super::{NODE_NAME, PARAMS, ShiftInfo, SorterConfig};
use crate::msgs::RosMessage;
use crate::msgs::coin_sorter::{CoinDetectionArray, SortCommand};
use crate::msgs::diagnostic_msgs::DiagnosticArray;
use crate::msgs::sensor_msgs::Image;
use crate::msgs::vision_msgs::Detection2DArray;
use crate::nodes::live_params::LiveParams;
use crate::params::{ParamSet, RosArgs};
use crate::pipeline::{Frame, Pipeline};
use crate::transport::rcl::convert;

/// How long one `spin_once` waits for work; also how soon the spinner sees the node stop.
const SPIN_PERIOD: Duration = Duration::from_millis(20);

/// Runs the node on rcl until SIGINT/SIGTERM or until its subscriptions close. `args` were
/// checked by our parser; rcl reads the same command line itself (remapping, parameters).
pub async fn serve(
    _args: RosArgs,
    params: ParamSet,
    cfg: SorterConfig,
    pipeline: Pipeline,
    shift: ShiftInfo,
) -> Result<()> {
    let ctx = rcl_context()?;
    let mut node = r2r::Node::create(ctx, NODE_NAME, "").context("cannot create the rcl node")?;
    let fq_name = node.fully_qualified_name().context("the rcl node has no name")?;
    crate::transport::rcl::log::start(node.logger());

    let pending = Pending::new(&params, pipeline);
    let served = Arc::new(Mutex::new(RclParams(pending.live.clone())));
    // The change stream is not needed: accepted changes reach the classification thread
    // through `LiveParams`; dropping it only makes r2r skip its event copies.
    let (param_services, _) = node
        .make_derived_parameter_handler(served)
        .context("cannot start the parameter services")?;
    // r2r's handlers panic when a reply cannot be sent (a client that gave up); in a task of
    // their own that ends the parameter services, said once, and not the node.
    let param_task = tokio::spawn(param_services);
    tokio::spawn(async move {
        if let Err(e) = param_task.await {
            tracing::error!(
                "the parameter services stopped ({e}); ros2 param no longer reaches this node, \
                 which goes on classifying. Restart it to get them back"
            );
        }
    });

    let out = RclOutlets {
        det_pub: untyped::<CoinDetectionArray>(&mut node, "~/detections")?,
        vision_pub: match untyped::<Detection2DArray>(&mut node, "~/detections_2d") {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("{e:#}; ~/detections_2d is not published");
                None
            }
        },
        // Off by default: no publisher exists and no frame is kept or drawn.
        debug_pub: match cfg.debug_image {
            true => Some(
                node.create_publisher::<r2r::sensor_msgs::msg::Image>(
                    "~/debug_image",
                    convert::debug_image_qos(),
                )
                .context("cannot create the ~/debug_image publisher")?,
            ),
            false => None,
        },
        cmd_pub: untyped::<SortCommand>(&mut node, "~/sort_commands")?,
    };
    let diag_pub = untyped::<DiagnosticArray>(&mut node, "/diagnostics")?;
    let raw_sub = node
        .subscribe::<r2r::sensor_msgs::msg::Image>(
            &cfg.image_topic,
            convert::image_qos(cfg.image_qos),
        )
        .with_context(|| format!("cannot subscribe to {}", cfg.image_topic))?;
    let comp_sub = node
        .subscribe::<r2r::sensor_msgs::msg::CompressedImage>(
            &cfg.compressed_topic,
            convert::image_qos(cfg.image_qos),
        )
        .with_context(|| format!("cannot subscribe to {}", cfg.compressed_topic))?;
    let core = pending.start(cfg, shift, out)?;
    let services = services::start(&mut node)?;
    tracing::info!(
        "{fq_name} ready on rcl: classifying {} and {}, publishing ~/detections (and \
         ~/detections_2d) and ~/sort_commands",
        core.cfg().image_topic,
        core.cfg().compressed_topic
    );

    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("rcl-spin".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    node.spin_once(SPIN_PERIOD);
                }
                node
            })
            .context("cannot start the rcl spin thread")?
    };

    let receive = async {
        let raw = raw_sub.map(|m| (Frame::Raw(convert::image_from(m)), "image"));
        let comp = comp_sub.map(|m| (Frame::Compressed(convert::compressed_from(m)), "compressed"));
        let mut frames = futures::stream::select(raw, comp);
        while let Some((frame, topic)) = frames.next().await {
            core.admit(frame, topic);
        }
    };
    let diagnostics = async {
        let mut tick = tokio::time::interval(core.cfg().diagnostics_period);
        loop {
            tick.tick().await;
            let sent = convert::cdr(&core.diagnostics(&fq_name))
                .and_then(|bytes| diag_pub.publish_raw(&bytes).map_err(anyhow::Error::from));
            if let Err(e) = sent {
                tracing::debug!("could not publish diagnostics: {e:#}");
            }
        }
    };
    tokio::select! {
        _ = super::super::shutdown_signal() => tracing::info!("shutdown requested; stopping"),
        _ = services.serve(&core) => {}
        _ = receive => tracing::warn!("image subscriptions closed; stopping"),
        _ = diagnostics => {}
    }
    core.finish();
    stop.store(true, Ordering::SeqCst);
    // The node (and with it every publisher and subscription) is dropped after the thread
    // that spins it has stopped.
    match spinner.join() {
        Ok(_node) => Ok(()),
        Err(_) => anyhow::bail!("the rcl spin thread panicked; the node stopped"),
    }
}

/// The rcl context. r2r panics when rcl refuses the command line (arguments our parser
/// accepts but rcl does not, e.g. YAML aliases in a params file); that becomes an error.
fn rcl_context() -> Result<r2r::Context> {
    let quiet = std::panic::take_hook();
    // rcl has printed its reason; the panic's own message and backtrace would only hide it.
    std::panic::set_hook(Box::new(|_| {}));
    let ctx = std::panic::catch_unwind(r2r::Context::create);
    std::panic::set_hook(quiet);
    match ctx {
        Ok(ctx) => ctx.context("cannot initialise rcl"),
        Err(_) => anyhow::bail!(
            "rcl refused the command line (its message is above); the node runs on rcl only \
             with arguments rcl accepts"
        ),
    }
}

/// An untyped publisher of `T` on `topic`, with the output QoS. Fails when r2r was built
/// without type support for `T` (its package was not in the sourced workspace).
fn untyped<T: RosMessage>(node: &mut r2r::Node, topic: &str) -> Result<PublisherUntyped> {
    let ty = T::ros_type();
    node.create_publisher_untyped(topic, &ty, convert::output_qos()).with_context(|| {
        format!(
            "cannot publish {topic} as {ty}: r2r has no type support for it. Build the \
             package once without the r2r feature, source install/setup.bash, then build it \
             with r2r, so that r2r generates the types of every sourced package"
        )
    })
}

/// The r2r publishers of the rcl backend.
struct RclOutlets {
    det_pub: PublisherUntyped,
    /// `None` when the workspace has no `vision_msgs`.
    vision_pub: Option<PublisherUntyped>,
    /// `~/debug_image`, when the `debug_image` parameter is on.
    debug_pub: Option<r2r::Publisher<r2r::sensor_msgs::msg::Image>>,
    cmd_pub: PublisherUntyped,
}

fn raw<T: serde::Serialize>(publisher: &PublisherUntyped, m: &T) -> Result<()> {
    Ok(publisher.publish_raw(&convert::cdr(m)?)?)
}

impl Outlets for RclOutlets {
    fn detections(&self, m: CoinDetectionArray) -> Result<()> {
        raw(&self.det_pub, &m)
    }
    fn detections_2d(&self, m: Detection2DArray) -> Result<()> {
        match &self.vision_pub {
            Some(p) => raw(p, &m),
            None => Ok(()),
        }
    }
    fn sort_command(&self, m: SortCommand) -> Result<()> {
        raw(&self.cmd_pub, &m)
    }
    fn wants_debug_image(&self) -> bool {
        self.debug_pub.is_some()
    }
    fn debug_image(&self, m: Image) -> Result<()> {
        match &self.debug_pub {
            Some(p) => Ok(p.publish(&convert::image_to(m))?),
            None => Ok(()),
        }
    }
}

/// The node's parameters in r2r's parameter services: declared with their help text, read
/// from [`LiveParams`], and set through it, so a refused change is answered with its reason.
struct RclParams(Arc<LiveParams>);

fn refused(name: &str, msg: String) -> r2r::Error {
    r2r::Error::ParameterValueConv { name: name.to_string(), msg }
}

impl RosParams for RclParams {
    fn register_parameters(
        &mut self,
        _prefix: &str,
        _param: Option<Parameter>,
        params: &mut indexmap::IndexMap<String, Parameter>,
    ) -> r2r::Result<()> {
        for (name, value) in self.0.current().iter() {
            let help = PARAMS.iter().find(|s| s.name == name).map_or("", |s| s.help);
            params.insert(
                name.to_string(),
                Parameter { value: convert::param_to(value), description: help },
            );
        }
        Ok(())
    }

    fn get_parameter(&mut self, name: &str) -> r2r::Result<ParameterValue> {
        let current = self.0.current();
        let value = current
            .get(name)
            .ok_or_else(|| r2r::Error::InvalidParameterName { name: name.to_string() })?;
        Ok(convert::param_to(value))
    }

    fn set_parameter(&mut self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        let ours = convert::param_from(value).map_err(|e| refused(name, e))?;
        self.0.set(name, ours).map_err(|e| refused(name, e))
    }

    fn check_parameter(&self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        let ours = convert::param_from(value).map_err(|e| refused(name, e))?;
        self.0.candidate(name, ours).map(|_| ()).map_err(|e| refused(name, e))
    }
}

/// `~/enable` and `~/reload_model`, typed by `std_srvs` from the sourced workspace.
#[cfg(coin_sorter_std_srvs)]
mod services {
    use anyhow::{Context as _, Result};
    use futures::{Stream, StreamExt};
    use r2r::ServiceRequest;
    use r2r::std_srvs::srv::{SetBool, Trigger};

    use crate::nodes::sorter::worker::Core;

    /// The two services' request streams.
    pub struct Services<E, R> {
        enable: E,
        reload: R,
    }

    /// Creates both services on `node`.
    pub fn start(
        node: &mut r2r::Node,
    ) -> Result<
        Services<
            // `use<>`: the streams do not borrow the node, which moves to its spin thread.
            impl Stream<Item = ServiceRequest<SetBool::Service>> + Unpin + use<>,
            impl Stream<Item = ServiceRequest<Trigger::Service>> + Unpin + use<>,
        >,
    > {
        let qos = r2r::QosProfile::services_default();
        Ok(Services {
            enable: node
                .create_service::<SetBool::Service>("~/enable", qos.clone())
                .context("cannot create ~/enable")?,
            reload: node
                .create_service::<Trigger::Service>("~/reload_model", qos)
                .context("cannot create ~/reload_model")?,
        })
    }

    impl<E, R> Services<E, R>
    where
        E: Stream<Item = ServiceRequest<SetBool::Service>> + Unpin,
        R: Stream<Item = ServiceRequest<Trigger::Service>> + Unpin,
    {
        /// Answers requests until the node stops.
        pub async fn serve(self, core: &Core) {
            let Self { mut enable, mut reload } = self;
            let enable = async {
                while let Some(req) = enable.next().await {
                    let a = core.set_enabled(req.message.data);
                    let resp = SetBool::Response { success: a.success, message: a.message };
                    if let Err(e) = req.respond(resp) {
                        tracing::warn!("could not answer an ~/enable request: {e}");
                    }
                }
            };
            let reload = async {
                while let Some(req) = reload.next().await {
                    let a = core.reload().await;
                    let resp = Trigger::Response { success: a.success, message: a.message };
                    if let Err(e) = req.respond(resp) {
                        tracing::warn!("could not answer a ~/reload_model request: {e}");
                    }
                }
            };
            futures::join!(enable, reload);
            std::future::pending::<()>().await
        }
    }
}

/// Without `std_srvs` in the workspace r2r was built against, the node runs without
/// `~/enable` and `~/reload_model`, and says so at start-up.
#[cfg(not(coin_sorter_std_srvs))]
mod services {
    use anyhow::Result;

    use crate::nodes::sorter::worker::Core;

    /// Stands in for the services that cannot exist.
    pub struct Services;

    /// Says why the services are missing.
    pub fn start(_node: &mut r2r::Node) -> Result<Services> {
        tracing::warn!(
            "built without std_srvs in the ROS 2 workspace: ~/enable and ~/reload_model are \
             not offered. Source a workspace with std_srvs and rebuild to get them"
        );
        Ok(Services)
    }

    impl Services {
        /// Never finishes: there is nothing to answer.
        pub async fn serve(self, _core: &Core) {
            std::future::pending::<()>().await
        }
    }
}
