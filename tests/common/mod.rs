//! Helpers shared by the integration tests: where the shared data lives and how to read it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use coin_sorter::decode::RgbImage;

/// The read-only shared data folder beside the repository.
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// A labelled coin: label, centre and mean radius in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub label: String,
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

/// Reads a LabelMe annotation: each polygon becomes its centroid and mean centre distance.
pub fn read_labelme(path: &Path) -> Vec<Labelled> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pts: Vec<(f32, f32)> = s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32))
                .collect();
            let n = pts.len() as f32;
            let cx = pts.iter().map(|p| p.0).sum::<f32>() / n;
            let cy = pts.iter().map(|p| p.1).sum::<f32>() / n;
            let r =
                pts.iter().map(|p| ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()).sum::<f32>()
                    / n;
            Labelled { label: s["label"].as_str().unwrap().to_string(), x: cx, y: cy, r }
        })
        .collect()
}

/// Loads an image file as RGB, shrunk (if needed) so its longest side is `max_side`; returns
/// the image and the scale applied.
pub fn load_rgb(path: &Path, max_side: u32) -> (RgbImage, f32) {
    let img = image::open(path).unwrap().into_rgb8();
    let (w, h) = img.dimensions();
    let scale = (max_side as f32 / w.max(h) as f32).min(1.0);
    let img = if scale < 1.0 {
        let (nw, nh) = ((w as f32 * scale).round() as u32, (h as f32 * scale).round() as u32);
        image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let (width, height) = img.dimensions();
    (RgbImage { width, height, data: img.into_raw() }, scale)
}

/// The `coins-photos` scenes: image path and labelled coins, sorted by file name.
pub fn photo_scenes() -> Vec<(PathBuf, Vec<Labelled>)> {
    let dir = shared_data().join("coins-photos/annotations");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            let img = f.parent().unwrap().join(v["imagePath"].as_str().unwrap());
            (img, read_labelme(&f))
        })
        .collect()
}

/// Copies the first `per_photo` crops of the first `photos` source photos of each class in
/// `classes` (all classes when empty) of `coins-mobile` into a class-per-folder set in `dst`.
pub fn coins_subset(dst: &Path, classes: &[&str], photos: usize, per_photo: usize) {
    let src = shared_data().join("coins-mobile");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs.retain(|d| classes.is_empty() || classes.iter().any(|c| d.ends_with(c)));
    for class in dirs {
        let out = dst.join(class.file_name().unwrap());
        std::fs::create_dir_all(&out).unwrap();
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&class).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let mut groups: Vec<String> = Vec::new();
        let mut per_group = std::collections::HashMap::<String, usize>::new();
        for f in files {
            let g = coin_sorter::train::dataset::group_id(&f);
            if !groups.contains(&g) {
                if groups.len() == photos {
                    continue;
                }
                groups.push(g.clone());
            }
            let n = per_group.entry(g).or_default();
            if *n < per_photo {
                *n += 1;
                std::fs::copy(&f, out.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// Builds a tiny 8-class model (ResNet-50 structure, base width 8, 32 px input) trained for
/// two steps on two crops of two photos per class of `coins-mobile`, in `dir`. Its answers are
/// poor but deterministic, which is what transport tests need.
pub fn tiny_model(dir: &Path) -> PathBuf {
    tiny_model_of(dir, "tiny", &[], 2)
}

/// Like [`tiny_model`], on `classes` only (all when empty) and `photos` photos per class, as
/// `dir/<name>.pt`.
pub fn tiny_model_of(dir: &Path, name: &str, classes: &[&str], photos: usize) -> PathBuf {
    let data = dir.join(format!("{name}_set"));
    coins_subset(&data, classes, photos, 2);
    let mut args = coin_sorter::train::TrainArgs::new(data);
    args.out = dir.join(format!("{name}.pt"));
    args.input_size = 32;
    args.base_width = 8;
    args.epochs = 1;
    args.batch_size = 8;
    args.max_steps = Some(2);
    args.val_fraction = 0.5;
    coin_sorter::train::run(&args).unwrap().model
}

/// A TorchScript model beside `like` (`<name>.pt`, with a copy of `like`'s metadata) whose
/// forward pass is `forward(input, width)`, traced on a batch of two; `width` is the output
/// width the metadata expects (labels plus feature columns).
pub fn traced_like(
    like: &Path,
    name: &str,
    forward: impl Fn(&tch::Tensor, i64) -> tch::Tensor,
) -> PathBuf {
    let meta = coin_sorter::classify::metadata::ModelMetadata::path_for_model(like);
    let text = std::fs::read_to_string(&meta).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let width = json["labels"].as_array().unwrap().len() as i64
        + json["feature_columns"].as_u64().unwrap() as i64;
    let side = json["input_size"].as_i64().unwrap();
    let dummy = tch::Tensor::zeros([2, 3, side, side], tch::kind::FLOAT_CPU);
    let module = tch::CModule::create_by_tracing(name, "forward", &[dummy], &mut |xs| {
        vec![forward(&xs[0], width)]
    })
    .unwrap();
    let dir = like.parent().unwrap();
    let model = dir.join(format!("{name}.pt"));
    module.save(&model).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
    model
}

/// `--ros-args` for a node: `model_path:=model`, then each `name:=value` of `params`.
pub fn node_args(model: &Path, params: &[&str]) -> Vec<String> {
    let mut args =
        vec!["--ros-args".to_string(), "-p".into(), format!("model_path:={}", model.display())];
    for p in params {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    args
}

/// Fails the test unless it runs in a private loopback-only network namespace.
pub fn require_private_network() {
    if let Err(e) = coin_sorter::transport::netns::require_loopback_only("this test") {
        panic!("{e}; run the tests with scripts/test.sh");
    }
}

/// A node binary started by a test, on its own DDS domain, stderr captured to a file. Stopped
/// with SIGINT (then killed) when dropped.
pub struct NodeProc {
    pub child: std::process::Child,
    pub stderr: PathBuf,
}

impl NodeProc {
    /// Starts `exe` with `args` on DDS domain `domain`, stderr into `dir/<name>.log`.
    pub fn start(exe: &str, name: &str, domain: u16, args: &[String], dir: &Path) -> Self {
        let stderr = dir.join(format!("{name}.log"));
        let child = std::process::Command::new(exe)
            .args(args)
            .env("ROS_DOMAIN_ID", domain.to_string())
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, stderr }
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops the node with SIGINT and waits up to 10 s; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        if let Ok(Some(s)) = self.child.try_wait() {
            return s.success();
        }
        // SAFETY: signalling our own, not yet reaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh DDS domain id for one test (per process and test), so parallel tests never see
/// each other's nodes.
pub fn domain_id(slot: u16) -> u16 {
    (std::process::id() as u16 % 20) * 10 + slot + 10
}

/// A frame from `coins-photos`, shrunk to 640 px, as an rgb8 Image with the given stamp.
pub fn photo_frame(index: usize, stamp_ns: i64) -> coin_sorter::msgs::sensor_msgs::Image {
    let (path, _) = &photo_scenes()[index];
    let (img, _) = load_rgb(path, 640);
    coin_sorter::msgs::sensor_msgs::Image {
        header: coin_sorter::msgs::std_msgs::Header {
            stamp: coin_sorter::msgs::std_msgs::Time::from_nanos(stamp_ns),
            frame_id: "camera".into(),
        },
        height: img.height,
        width: img.width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: img.width * 3,
        data: img.data,
    }
}

/// Times a service call is repeated before a test gives up on it.
pub const CALL_TRIES: usize = 20;

/// Calls `client` with `request` until it answers, waiting `per_try` each time, at most
/// [`CALL_TRIES`] times: a request sent before the server has matched the client is lost.
pub async fn call_until_answered<Req, Resp>(
    client: &ros2_client::service::Client<Req, Resp>,
    request: Req,
    per_try: std::time::Duration,
) -> Option<Resp>
where
    Req: ros2_client::Message + Clone + 'static,
    Resp: ros2_client::Message + 'static,
{
    for _ in 0..CALL_TRIES {
        let answer =
            tokio::time::timeout(per_try, client.async_call_service(request.clone())).await;
        if let Ok(Ok(resp)) = answer {
            return Some(resp);
        }
    }
    None
}

/// Publishes with `send(attempt)` and waits up to 2 s for a message of `answers` that
/// `is_answer` accepts, at most `tries` times; returns that message. A frame sent before the
/// node's reader has matched our writer is lost, so the first frame of a test is sent so.
pub async fn send_until_answered<M, I, E>(
    mut send: impl FnMut(i64),
    answers: &mut (impl futures::Stream<Item = Result<(M, I), E>> + Unpin),
    is_answer: impl Fn(&M) -> bool,
    tries: i64,
) -> Option<M> {
    use futures::StreamExt;
    for attempt in 0..tries {
        send(attempt);
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while let Ok(Some(next)) = tokio::time::timeout_at(until, answers.next()).await {
            if let Ok((m, _)) = next
                && is_answer(&m)
            {
                return Some(m);
            }
        }
    }
    None
}
