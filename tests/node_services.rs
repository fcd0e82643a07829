//! The node's services over DDS, called from a client this test starts: `~/enable`
//! (`std_srvs/srv/SetBool`) pauses classification (frames counted as paused, nothing
//! published) and resumes it, and says so on `/rosout`; `~/reload_model`
//! (`std_srvs/srv/Trigger`) swaps the model between frames.

mod common;

use std::time::{Duration, Instant};

use coin_sorter::msgs::coin_sorter::CoinDetectionArray;
use coin_sorter::msgs::diagnostic_msgs::DiagnosticArray;
use coin_sorter::msgs::rcl_interfaces::Log;
use coin_sorter::msgs::sensor_msgs::Image;
use coin_sorter::msgs::std_srvs::{SET_BOOL, SetBoolRequest, SetBoolResponse};
use coin_sorter::params::RosArgs;
use coin_sorter::transport::{RosNode, qos};
use common::NodeProc;
use futures::StreamExt;

const NODE: &str = env!("CARGO_BIN_EXE_coin_sorter_node");

#[test]
fn enable_false_pauses_and_true_resumes_classification() {
    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let domain = common::domain_id(9);
    let args = common::node_args(
        &model,
        &["image_qos_reliability:=reliable", "image_qos_depth:=10", "diagnostics_period:=0.1"],
    );
    let mut node = NodeProc::start(NODE, "sorter", domain, &args, dir.path());
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut me = RosNode::in_domain("services_test", &RosArgs::default(), domain).unwrap();
        let raw = me.publisher::<Image>("/camera/image_raw", qos::replay()).unwrap();
        let dets = me
            .subscription::<CoinDetectionArray>("/coin_sorter/detections", qos::output())
            .unwrap();
        let diags = me.subscription::<DiagnosticArray>("/diagnostics", qos::output()).unwrap();
        let rosout = me.subscription::<Log>("/rosout", qos::rosout()).unwrap();
        let enable =
            me.client::<SetBoolRequest, SetBoolResponse>("/coin_sorter/enable", SET_BOOL).unwrap();
        let mut dets = std::pin::pin!(dets.async_stream());
        let mut diags = std::pin::pin!(diags.async_stream());
        let found =
            tokio::time::timeout(Duration::from_secs(60), enable.wait_for_service(me.inner()))
                .await;
        assert!(found.is_ok(), "no ~/enable service; log:\n{}", node.log());

        // A request sent before the server's reader has seen ours is lost: call until
        // answered, a bounded number of times. A late answer to a lost-looking call means the
        // repeat finds the state already set, which the messages tell apart.
        let call = async |data: bool| -> SetBoolResponse {
            let request = SetBoolRequest { data };
            let answer = common::call_until_answered(&enable, request, Duration::from_secs(2));
            answer.await.unwrap_or_else(|| panic!("~/enable {data} unanswered:\n{}", node.log()))
        };
        let paused = call(false).await;
        assert!(paused.success);
        assert!(
            paused.message.starts_with("classification paused")
                || paused.message == "already paused",
            "{}",
            paused.message
        );

        // Frames sent while paused are received and counted, and nothing is published.
        let n =
            me.wait_for_subscribers("/camera/image_raw", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(n, 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stamp = 1;
        loop {
            assert!(Instant::now() < deadline, "no frame counted as paused; log:\n{}", node.log());
            raw.publish(common::photo_frame(2, stamp)).unwrap();
            stamp += 1;
            let next = tokio::time::timeout(Duration::from_secs(1), diags.next()).await;
            let Ok(Some(Ok((d, _)))) = next else { continue };
            let value = |k: &str| {
                d.status[0].values.iter().find(|kv| kv.key == k).map(|kv| kv.value.clone())
            };
            assert_eq!(value("enabled").as_deref(), Some("false"));
            assert_eq!(value("frames_processed").as_deref(), Some("0"));
            if value("frames_paused").is_some_and(|v| v != "0") {
                break;
            }
        }
        let quiet = tokio::time::timeout(Duration::from_secs(2), dets.next()).await;
        assert!(quiet.is_err(), "detections were published while paused");

        let resumed = call(true).await;
        assert!(
            ["classification resumed", "already classifying"].contains(&resumed.message.as_str()),
            "{}",
            resumed.message
        );
        assert_eq!(call(true).await.message, "already classifying");
        // The service's log line reached /rosout as rcl_interfaces/Log from this node.
        let mut rosout = std::pin::pin!(rosout.async_stream());
        let deadline = Instant::now() + Duration::from_secs(20);
        let line = loop {
            assert!(Instant::now() < deadline, "no /rosout line; log:\n{}", node.log());
            let next = tokio::time::timeout(Duration::from_secs(1), rosout.next()).await;
            if let Ok(Some(Ok((l, _)))) = next
                && l.msg.contains("~/enable false")
            {
                break l;
            }
        };
        assert_eq!((line.name.as_str(), line.level), ("coin_sorter", Log::INFO));
        assert!(
            line.msg.ends_with("classification paused; incoming frames are counted and dropped")
                || line.msg.ends_with("already paused"),
            "{line:?}"
        );
        assert!(line.file.ends_with("sorter/worker.rs") && line.line > 0, "{line:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let resume_stamp = 1_000_000;
        loop {
            assert!(Instant::now() < deadline, "no detections after resuming:\n{}", node.log());
            raw.publish(common::photo_frame(2, resume_stamp)).unwrap();
            let next = tokio::time::timeout(Duration::from_secs(1), dets.next()).await;
            if let Ok(Some(Ok((d, _)))) = next {
                assert_eq!(d.header.stamp.as_nanos(), resume_stamp, "a paused frame leaked");
                assert_eq!(d.detections.len(), 3);
                break;
            }
        }
    });
    assert!(node.stop(), "node did not exit cleanly; log:\n{}", node.log());
    let log = node.log();
    assert_eq!(log.matches("~/enable false: classification paused").count(), 1, "{log}");
    assert_eq!(log.matches("~/enable true: classification resumed").count(), 1, "{log}");
}

/// Replaces the model files at `dst` (model and metadata) with those of `src`, each renamed
/// into place whole.
fn install(src: &std::path::Path, dst: &std::path::Path) {
    for ext in ["pt", "json"] {
        let tmp = dst.with_extension(format!("{ext}.new"));
        std::fs::copy(src.with_extension(ext), &tmp).unwrap();
        std::fs::rename(&tmp, dst.with_extension(ext)).unwrap();
    }
}

#[test]
fn reload_model_swaps_between_frames_and_refuses_a_bad_file() {
    use coin_sorter::msgs::std_srvs::{TRIGGER, TriggerRequest, TriggerResponse};
    use ros2_client::parameters::ParameterValue as Ros;
    use ros2_client::parameters::raw;
    use ros2_client::rcl_interfaces::{SetParametersRequest, SetParametersResponse};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    // Knows only 1e and 2e, so its answers are told apart from the first model's.
    let second = common::tiny_model_of(dir.path(), "two_class", &["1e", "2e"], 4);
    let domain = common::domain_id(10);
    // Every frame is the same photo: one command per detection keeps this about models.
    let args = common::node_args(
        &model,
        &["image_qos_reliability:=reliable", "image_qos_depth:=10", "tracking:=false"],
    );
    let mut node = NodeProc::start(NODE, "sorter", domain, &args, dir.path());
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let answered = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    // (frame index, labels) of every answered frame, and the index answered last before each
    // reload answer came back.
    let (labels, swapped_at) = rt.block_on(async {
        let mut me = RosNode::in_domain("reload_test", &RosArgs::default(), domain).unwrap();
        let raw = me.publisher::<Image>("/camera/image_raw", qos::replay()).unwrap();
        let dets = me
            .subscription::<CoinDetectionArray>("/coin_sorter/detections", qos::output())
            .unwrap();
        let reload = me
            .client::<TriggerRequest, TriggerResponse>("/coin_sorter/reload_model", TRIGGER)
            .unwrap();
        let set = me
            .client::<SetParametersRequest, SetParametersResponse>(
                "/coin_sorter/set_parameters",
                ("rcl_interfaces", "SetParameters"),
            )
            .unwrap();
        let mut dets = std::pin::pin!(dets.async_stream());
        let n =
            me.wait_for_subscribers("/camera/image_raw", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(n, 1, "the node never subscribed; log:\n{}", node.log());
        let found =
            tokio::time::timeout(Duration::from_secs(60), reload.wait_for_service(me.inner()))
                .await;
        assert!(found.is_ok(), "no ~/reload_model service; log:\n{}", node.log());

        let frames = async {
            let mut labels: Vec<(usize, Vec<String>)> = Vec::new();
            for i in 0..80usize {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let stamp = 1_000 + i as i64;
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut next_send = Instant::now();
                loop {
                    assert!(Instant::now() < deadline, "frame {i} lost; log:\n{}", node.log());
                    // The first frame may meet a reader that has not matched us yet.
                    if i == 0 && Instant::now() >= next_send {
                        raw.publish(common::photo_frame(2, stamp)).unwrap();
                        next_send = Instant::now() + Duration::from_secs(2);
                    } else if i > 0 && next_send <= Instant::now() {
                        raw.publish(common::photo_frame(2, stamp)).unwrap();
                        next_send = deadline;
                    }
                    let next = tokio::time::timeout(Duration::from_millis(200), dets.next()).await;
                    if let Ok(Some(Ok((d, _)))) = next
                        && d.header.stamp.as_nanos() == stamp
                    {
                        assert_eq!(d.detections.len(), 3, "frame {i}");
                        labels.push((i, d.detections.iter().map(|c| c.label.clone()).collect()));
                        answered.store(i + 1, Ordering::SeqCst);
                        break;
                    }
                }
            }
            labels
        };
        let swaps = async {
            let wait_for = async |n: usize| {
                let deadline = Instant::now() + Duration::from_secs(120);
                while answered.load(Ordering::SeqCst) < n {
                    assert!(Instant::now() < deadline, "frames stopped; log:\n{}", node.log());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            let call = async || -> TriggerResponse {
                let request = TriggerRequest::default();
                let answer = common::call_until_answered(&reload, request, Duration::from_secs(10));
                answer.await.unwrap_or_else(|| panic!("~/reload_model unanswered:\n{}", node.log()))
            };
            wait_for(3).await;
            install(&second, &model);
            let ok = call().await;
            let first = answered.load(Ordering::SeqCst);
            assert!(ok.success, "{}", ok.message);
            assert!(ok.message.contains(&model.display().to_string()), "{}", ok.message);
            // The parameter check now knows the new model's labels: a table of just its two
            // is enough (it would have been refused for the first model's eight).
            let table = Ros::StringArray(vec!["1e:euro1".into(), "2e:euro2".into()]);
            let request = SetParametersRequest {
                parameter: vec![raw::Parameter { name: "bin_table".into(), value: table.into() }],
            };
            let answer = common::call_until_answered(&set, request, Duration::from_secs(3)).await;
            let result = answer.and_then(|r| r.results.into_iter().next());
            let result = result.expect("set_parameters answered");
            assert!(result.successful, "{}", result.reason);
            wait_for(first + 3).await;
            std::fs::write(&model, b"not a TorchScript file").unwrap();
            let bad = call().await;
            let second_at = answered.load(Ordering::SeqCst);
            assert!(!bad.success, "a broken file was accepted: {}", bad.message);
            assert!(bad.message.contains(&model.display().to_string()), "{}", bad.message);
            wait_for(second_at + 3).await;
            done.store(true, Ordering::SeqCst);
            first
        };
        let (labels, first) = tokio::join!(frames, swaps);
        (labels, first)
    });
    assert!(node.stop(), "node did not exit cleanly; log:\n{}", node.log());
    let two = ["1e".to_string(), "2e".to_string()];
    let before = &labels[..3];
    assert!(
        before.iter().any(|(_, l)| l.iter().any(|x| !two.contains(x))),
        "the first model must answer something besides 1e and 2e for the swap to show: \
         {before:?}"
    );
    let after: Vec<&(usize, Vec<String>)> =
        labels.iter().filter(|(i, _)| *i > swapped_at).collect();
    assert!(after.len() >= 6, "{} frames after the swap", after.len());
    for (i, l) in after {
        assert!(l.iter().all(|x| two.contains(x)), "frame {i} after the swap: {l:?}");
    }
    let indices: Vec<usize> = labels.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, (0..labels.len()).collect::<Vec<_>>(), "every frame answered, in order");
    let log = node.log();
    assert_eq!(log.matches("~/reload_model refused").count(), 1, "{log}");
}

#[test]
fn parameters_are_served_and_safe_ones_apply_live_and_the_debug_image_shows_it() {
    use ros2_client::parameters::ParameterValue as Ros;
    use ros2_client::parameters::raw;
    use ros2_client::rcl_interfaces::{
        GetParametersRequest, GetParametersResponse, SetParametersRequest, SetParametersResponse,
    };

    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let domain = common::domain_id(11);
    // Only the confidence threshold may send a coin to the reject bin here.
    let args = common::node_args(
        &model,
        &[
            "image_qos_reliability:=reliable",
            "image_qos_depth:=10",
            "tracking:=false",
            "shift_score:=off",
            "debug_image:=true",
        ],
    );
    let mut node = NodeProc::start(NODE, "sorter", domain, &args, dir.path());
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut me = RosNode::in_domain("params_test", &RosArgs::default(), domain).unwrap();
        let raw_pub = me.publisher::<Image>("/camera/image_raw", qos::replay()).unwrap();
        let dets = me
            .subscription::<CoinDetectionArray>("/coin_sorter/detections", qos::output())
            .unwrap();
        let debug = me
            .subscription::<Image>(
                "/coin_sorter/debug_image",
                qos::image("best_effort", 1).unwrap(),
            )
            .unwrap();
        let mut debug = std::pin::pin!(debug.async_stream());
        let set = me
            .client::<SetParametersRequest, SetParametersResponse>(
                "/coin_sorter/set_parameters",
                ("rcl_interfaces", "SetParameters"),
            )
            .unwrap();
        let get = me
            .client::<GetParametersRequest, GetParametersResponse>(
                "/coin_sorter/get_parameters",
                ("rcl_interfaces", "GetParameters"),
            )
            .unwrap();
        let mut dets = std::pin::pin!(dets.async_stream());
        for ok in [
            tokio::time::timeout(Duration::from_secs(60), set.wait_for_service(me.inner())).await,
            tokio::time::timeout(Duration::from_secs(60), get.wait_for_service(me.inner())).await,
        ] {
            assert!(ok.is_ok(), "no parameter services; log:\n{}", node.log());
        }
        // Each call repeats until answered (a request sent before the server matched us is
        // lost); setting a value twice gives the same answer.
        let set_one = async |name: &str, value: Ros| -> raw::SetParametersResult {
            let request = SetParametersRequest {
                parameter: vec![raw::Parameter { name: name.into(), value: value.into() }],
            };
            let answer = common::call_until_answered(&set, request, Duration::from_secs(3)).await;
            let mut resp = answer
                .unwrap_or_else(|| panic!("set_parameters {name} unanswered:\n{}", node.log()));
            assert_eq!(resp.results.len(), 1);
            resp.results.remove(0)
        };

        let changed = set_one("confidence_threshold", Ros::Double(1.0)).await;
        assert!(changed.successful, "{}", changed.reason);
        let restart = set_one("image_topic", Ros::String("/other".into())).await;
        assert!(!restart.successful);
        assert!(restart.reason.contains("restart"), "{}", restart.reason);
        let bad = set_one("confidence_threshold", Ros::Double(2.0)).await;
        assert!(!bad.successful);
        assert!(bad.reason.contains("confidence_threshold 2"), "{}", bad.reason);
        let unknown_bin = set_one("bin_table", Ros::StringArray(vec!["1e:a".into()])).await;
        assert!(!unknown_bin.successful, "a bin table without every label must be refused");

        let request = GetParametersRequest {
            names: vec!["confidence_threshold".into(), "image_topic".into()],
        };
        let values = tokio::time::timeout(Duration::from_secs(10), get.async_call_service(request))
            .await
            .unwrap()
            .unwrap()
            .values;
        assert_eq!(values.len(), 2);
        assert_eq!((values[0].ptype, values[0].double_value), (3, 1.0));
        assert_eq!(values[1].string_value, "/camera/image_raw");

        // Confidence can never reach 1.0 here, so every coin of the next frame is rejected.
        let n =
            me.wait_for_subscribers("/camera/image_raw", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(n, 1);
        let send = |_| raw_pub.publish(common::photo_frame(2, 42)).unwrap();
        let frame = common::send_until_answered(send, &mut dets, |_| true, 15).await;
        let frame = frame.unwrap_or_else(|| panic!("no detections; log:\n{}", node.log()));
        assert_eq!(frame.detections.len(), 3);
        for d in &frame.detections {
            assert!(d.rejected && d.bin == "reject", "{d:?}");
        }
        // The debug image: the same frame with each rejected coin's circle drawn in red.
        let sent = common::photo_frame(2, 42);
        let deadline = Instant::now() + Duration::from_secs(30);
        let drawn = loop {
            assert!(Instant::now() < deadline, "no debug image; log:\n{}", node.log());
            let next = tokio::time::timeout(Duration::from_secs(2), debug.next()).await;
            if let Ok(Some(Ok((img, _)))) = next
                && img.header.stamp.as_nanos() == 42
            {
                break img;
            }
            raw_pub.publish(common::photo_frame(2, 42)).unwrap();
        };
        assert_eq!(
            (drawn.width, drawn.height, drawn.encoding.as_str()),
            (sent.width, sent.height, "rgb8")
        );
        for d in &frame.detections {
            let (x, y) = ((d.x + d.radius).round() as usize, d.y.round() as usize);
            let i = (y * sent.width as usize + x.min(sent.width as usize - 1)) * 3;
            assert_eq!(&drawn.data[i..i + 3], [220, 40, 40], "coin {} at ({x}, {y})", d.coin_id);
        }
        let changed = drawn.data.iter().zip(&sent.data).filter(|(a, b)| a != b).count();
        assert!(changed < sent.data.len() / 5, "{changed} bytes changed: more than outlines");
    });
    assert!(node.stop(), "node did not exit cleanly; log:\n{}", node.log());
    let log = node.log();
    assert_eq!(log.matches("parameter confidence_threshold set to").count(), 1, "{log}");
}
