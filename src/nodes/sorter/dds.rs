//! The sorter on the default backend: ros2-client over RustDDS, no ROS installation needed.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use ros2_client::Publisher;

use super::worker::{Core, Outlets, Pending};
use super::{NODE_NAME, ShiftInfo, SorterConfig};
use crate::msgs::coin_sorter::{CoinDetectionArray, SortCommand};
use crate::msgs::diagnostic_msgs::DiagnosticArray;
use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::msgs::std_srvs::{
    SET_BOOL, SetBoolRequest, SetBoolResponse, TRIGGER, TriggerRequest, TriggerResponse,
};
use crate::msgs::vision_msgs::Detection2DArray;
use crate::params::{ParamSet, RosArgs};
use crate::pipeline::{Frame, Pipeline};
use crate::transport::{RosNode, qos};

/// Runs the node on ros2-client until SIGINT/SIGTERM or until its subscriptions close.
pub async fn serve(
    args: RosArgs,
    params: ParamSet,
    cfg: SorterConfig,
    pipeline: Pipeline,
    shift: ShiftInfo,
) -> Result<()> {
    let pending = Pending::new(&params, pipeline);
    let options = crate::nodes::live_params::node_options(pending.live.clone());
    let mut node = RosNode::with_options(NODE_NAME, &args, options)?;
    let out = DdsOutlets::new(&mut node, cfg.debug_image)?;
    let diag_pub = node.publisher::<DiagnosticArray>("/diagnostics", qos::output())?;
    let core = pending.start(cfg, shift, out)?;
    let cfg = core.cfg();

    let enable_srv = node.server::<SetBoolRequest, SetBoolResponse>("~/enable", SET_BOOL)?;
    let reload_srv = node.server::<TriggerRequest, TriggerResponse>("~/reload_model", TRIGGER)?;
    let raw_sub = node.subscription::<Image>(&cfg.image_topic, cfg.image_qos.dds())?;
    let comp_sub =
        node.subscription::<CompressedImage>(&cfg.compressed_topic, cfg.image_qos.dds())?;
    tracing::info!(
        "{} ready: classifying {} and {}, publishing {} (and {}) and {}",
        node.fully_qualified_name(),
        node.resolve(&cfg.image_topic)?,
        node.resolve(&cfg.compressed_topic)?,
        node.resolve("~/detections")?,
        node.resolve("~/detections_2d")?,
        node.resolve("~/sort_commands")?
    );
    let receive = async {
        let mut raw = std::pin::pin!(raw_sub.async_stream());
        let mut comp = std::pin::pin!(comp_sub.async_stream());
        loop {
            let (arrival, topic) = tokio::select! {
                r = raw.next() => (r.map(|r| r.map(|(m, _)| Frame::Raw(m))), "image"),
                r = comp.next() => (r.map(|r| r.map(|(m, _)| Frame::Compressed(m))), "compressed"),
            };
            match arrival {
                Some(Ok(frame)) => core.admit(frame, topic),
                Some(Err(e)) => core.malformed(topic, &e),
                None => break,
            }
        }
    };
    let diagnostics = async {
        let mut tick = tokio::time::interval(cfg.diagnostics_period);
        let hardware_id = node.fully_qualified_name();
        loop {
            tick.tick().await;
            if let Err(e) = diag_pub.publish(core.diagnostics(&hardware_id)) {
                tracing::debug!("could not publish diagnostics: {e:?}");
            }
        }
    };
    tokio::select! {
        _ = super::super::shutdown_signal() => tracing::info!("shutdown requested; stopping"),
        _ = serve_enable(&enable_srv, &core) => {}
        _ = serve_reload(&reload_srv, &core) => {}
        _ = receive => tracing::warn!("image subscriptions closed; stopping"),
        _ = diagnostics => {}
    }
    core.finish();
    drop((raw_sub, comp_sub, diag_pub, enable_srv, reload_srv));
    node.shutdown().await;
    Ok(())
}

/// The ros2-client publishers of the default backend; `bench pipeline --publish` times them.
pub(crate) struct DdsOutlets {
    det_pub: Publisher<CoinDetectionArray>,
    vision_pub: Publisher<Detection2DArray>,
    /// `~/debug_image`, when the `debug_image` parameter is on.
    debug_pub: Option<Publisher<Image>>,
    cmd_pub: Publisher<SortCommand>,
}

impl DdsOutlets {
    /// The sorter's output publishers on `node`, `~/debug_image` only when `debug_image`.
    pub(crate) fn new(node: &mut RosNode, debug_image: bool) -> Result<Self> {
        Ok(Self {
            det_pub: node.publisher("~/detections", qos::output())?,
            vision_pub: node.publisher("~/detections_2d", qos::output())?,
            // Off by default: no publisher exists and no frame is kept or drawn.
            debug_pub: match debug_image {
                true => Some(node.publisher("~/debug_image", qos::image("best_effort", 1)?)?),
                false => None,
            },
            cmd_pub: node.publisher("~/sort_commands", qos::output())?,
        })
    }
}

fn dds<E: std::fmt::Debug>(r: std::result::Result<(), E>) -> Result<()> {
    r.map_err(|e| anyhow::anyhow!("{e:?}"))
}

impl Outlets for DdsOutlets {
    fn detections(&self, m: CoinDetectionArray) -> Result<()> {
        dds(self.det_pub.publish(m))
    }
    fn detections_2d(&self, m: Detection2DArray) -> Result<()> {
        dds(self.vision_pub.publish(m))
    }
    fn sort_command(&self, m: SortCommand) -> Result<()> {
        dds(self.cmd_pub.publish(m))
    }
    fn wants_debug_image(&self) -> bool {
        self.debug_pub.is_some()
    }
    fn debug_image(&self, m: Image) -> Result<()> {
        match &self.debug_pub {
            Some(p) => dds(p.publish(m)),
            None => Ok(()),
        }
    }
}

/// Answers `~/enable` (`std_srvs/srv/SetBool`) until the node stops.
async fn serve_enable(
    server: &ros2_client::service::Server<SetBoolRequest, SetBoolResponse>,
    core: &Core,
) {
    loop {
        let (id, req) = match server.async_receive_request().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("could not read an ~/enable request ({e:?}); waiting for the next");
                // A broken reader would otherwise fail again at once.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let a = core.set_enabled(req.data);
        let resp = SetBoolResponse { success: a.success, message: a.message };
        if let Err(e) = server.async_send_response(id, resp).await {
            tracing::warn!("could not answer an ~/enable request: {e:?}");
        }
    }
}

/// Answers `~/reload_model` (`std_srvs/srv/Trigger`) until the node stops.
async fn serve_reload(
    server: &ros2_client::service::Server<TriggerRequest, TriggerResponse>,
    core: &Core,
) {
    loop {
        let id = match server.async_receive_request().await {
            Ok((id, _)) => id,
            Err(e) => {
                tracing::warn!("could not read a ~/reload_model request ({e:?}); waiting");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let a = core.reload().await;
        let resp = TriggerResponse { success: a.success, message: a.message };
        if let Err(e) = server.async_send_response(id, resp).await {
            tracing::warn!("could not answer a ~/reload_model request: {e:?}");
        }
    }
}
