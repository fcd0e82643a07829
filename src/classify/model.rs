//! Running the exported TorchScript classifier on a batch of crops.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tch::{Device, Kind, Tensor};

use super::cuda_stream::CudaStream;
use super::device::{self, DevicePref, GraphOptimization, RunOptions};
use super::metadata::ModelMetadata;
use super::preprocess::{normalise_rgb_interleaved, normalise_rgb_planar};
use super::script::ScriptModule;

/// The class scores of one crop.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index into the model's labels of the most probable class.
    pub class: usize,
    /// Softmax probability of that class.
    pub confidence: f32,
    /// Softmax probabilities of every class, in label order.
    pub probs: Vec<f32>,
    /// Raw class scores (before softmax), in label order.
    pub logits: Vec<f32>,
    /// Penultimate features, for the shift monitor; empty when the model gives none (models
    /// exported before the monitor existed output logits only).
    pub features: Vec<f32>,
}

/// What the TorchScript module returned for a batch.
struct Outputs {
    /// `[N, classes]`.
    logits: Tensor,
    /// `[N, feature_columns]`, when the model has feature columns.
    features: Option<Tensor>,
}

/// A loaded TorchScript model and its metadata. Invariant: the model's output has one column
/// per label (checked at load time with a warm-up batch).
pub struct Classifier {
    module: ScriptModule,
    meta: ModelMetadata,
    device: Device,
    path: PathBuf,
    /// What was done to the module's graph at load: `Inference`, `Freeze` or `None`, never
    /// `Auto`.
    graph: GraphOptimization,
    /// Whether the forward pass runs under CUDA autocast (fp16); only ever true on CUDA, and
    /// only once the warm-up batch came back in half precision.
    half: bool,
    /// Whether batches are laid out channels-last (NHWC in memory, NCHW in shape).
    channels_last: bool,
    /// The classifier's own CUDA stream; `None` on the CPU, or when none could be had.
    stream: Option<CudaStream>,
    /// Host buffer every batch is normalised into, grown as batches grow and reused, so a
    /// frame allocates nothing for its input. Page-locked on CUDA, so the copy to the device
    /// is a direct, asynchronous one. The lock makes the buffer one batch's at a time.
    staging: Mutex<Option<Tensor>>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("path", &self.path)
            .field("device", &self.device)
            .field("labels", &self.meta.labels)
            .finish()
    }
}

impl Classifier {
    /// Loads `model` and the metadata beside it, on the preferred device, and runs one warm-up
    /// batch. Every error names the file that was wrong.
    ///
    /// The work runs on a thread of its own that ends with the load. libgomp, libtorch's
    /// OpenMP runtime, keeps a team of worker threads for every thread that ran a parallel
    /// region, and once it manages more threads than there are cores its workers stop
    /// spinning between parallel regions and sleep instead, so a forward pass spends its
    /// time waking them. A team left behind by a load on the caller's thread (the node's main
    /// thread, a reload's blocking task) made the node's forward pass twice as slow on 2
    /// cores (docs/performance.md).
    pub fn load(model: &Path, pref: DevicePref) -> Result<Self> {
        Self::load_with(model, RunOptions::on(pref))
    }

    /// [`Self::load`] with precision and memory layout chosen by `opts` too.
    pub fn load_with(model: &Path, opts: RunOptions) -> Result<Self> {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("model-load".into())
                // The 8 MiB a main thread gets: loads that ran on the node's main thread
                // need no more stack than they had there.
                .stack_size(8 << 20)
                .spawn_scoped(s, || Self::load_here(model, opts))
                .context("cannot start a thread to load the model")?
                .join()
                .map_err(|p| {
                    let why = crate::panics::panic_message(p.as_ref());
                    anyhow::anyhow!("loading model {} panicked: {why}", model.display())
                })?
        })
    }

    /// [`Self::load`] on the calling thread.
    fn load_here(model: &Path, opts: RunOptions) -> Result<Self> {
        if model.is_dir() {
            bail!("model file {} is a folder, not a TorchScript file", model.display());
        }
        if !model.exists() {
            bail!("model file {} does not exist", model.display());
        }
        if !model.is_file() {
            bail!("model file {} is not a regular file", model.display());
        }
        let meta_path = ModelMetadata::path_for_model(model);
        let meta = ModelMetadata::load(&meta_path)?;
        let device = device::select(opts.device)?;
        let stream = match device {
            Device::Cuda(i) => match CudaStream::new(i) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("{e:#}; the model will run on the default CUDA stream");
                    None
                }
            },
            _ => None,
        };
        if let Some(s) = &stream {
            // The weights' upload and the warm-up then run on the stream the frames will use.
            s.make_current()?;
        }
        let module = ScriptModule::load(model, device).map_err(|e| {
            torch_error(e, &format!("cannot load TorchScript model {}", model.display()))
        })?;
        let mut this = Self {
            module,
            meta,
            device,
            path: model.to_path_buf(),
            graph: GraphOptimization::None,
            // fp32 until the graph is settled: its outputs are compared in fp32.
            half: false,
            channels_last: opts.channels_last_on(device),
            stream,
            staging: Mutex::new(None),
        };
        let s = this.meta.input_size as usize;
        // A fixed pattern rather than zeros, so that a graph pass that changes the numbers
        // shows in the comparison below.
        let pattern: Vec<u8> =
            (0..TRACE_CHECK_BATCH * s * s * 3).map(|i| (i * 37 % 251) as u8).collect();
        let mut staging = None;
        let input = this.stage(&mut staging, &pattern, TRACE_CHECK_BATCH)?;
        let reference = this
            .forward(&input)
            .with_context(|| format!("model {} fails on a {s}x{s} input", model.display()))?;
        if !all_finite(&reference)? {
            bail!(
                "model {} gives scores that are not finite numbers (NaN or infinite) for a \
                 {s}x{s} test batch",
                model.display()
            );
        }
        let graph = opts.graph_on(device);
        if graph != GraphOptimization::None {
            this.optimize_graph(graph, &input, &reference);
        }
        this.half = opts.half_on(device);
        if this.half {
            // Autocast is libtorch's, applied to a TorchScript graph it did not trace; a model
            // it fails on, or leaves in fp32, still serves in fp32.
            match this.forward(&input) {
                Ok(out) if out.logits.kind() == Kind::Half => {}
                Ok(out) => {
                    tracing::warn!(
                        "model {}: autocast left its output in {:?}, so it does not run in half \
                         precision; running it in fp32",
                        model.display(),
                        out.logits.kind()
                    );
                    this.half = false;
                }
                Err(e) => {
                    tracing::warn!(
                        "model {} fails in half precision ({e:#}); running it in fp32",
                        model.display()
                    );
                    this.half = false;
                }
            }
        }
        this.forward(&input)
            .with_context(|| format!("model {} fails on a {s}x{s} input", model.display()))?;
        this.staging = Mutex::new(staging);
        // The next frame may come on another thread; the weights must be in place for it.
        this.synchronize()?;
        tracing::debug!("model {} runs {}", model.display(), this.run_mode());
        // The saved graph's weights, freed once the optimised copy replaced them, stay in the
        // C heap, where glibc keeps freed memory for reuse: 115 MiB of resident memory for the
        // 96 px ResNet-50 (docs/performance.md). The process has no use for it.
        // SAFETY: malloc_trim has no preconditions; it only returns free heap pages.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0)
        };
        Ok(this)
    }

    /// Replaces the module with a copy that has `graph`'s passes applied, when libtorch can
    /// apply them and the copy's outputs for `input` match `reference`, the module's own. A
    /// model the passes fail on, or change, keeps its graph as saved, with one warning.
    fn optimize_graph(&mut self, graph: GraphOptimization, input: &Tensor, reference: &Outputs) {
        let model = self.path.display();
        // An optimised graph is checked against the saved one's outputs, which only works for
        // a model that gives the same outputs for the same input every time.
        match self.difference_from(input, reference) {
            Ok(d) if d <= GRAPH_TOLERANCE => {}
            Ok(d) => {
                tracing::warn!(
                    "model {model} gives outputs up to {d:.2e} apart for the same test batch \
                     (random or stateful), so an optimised graph cannot be checked against \
                     it; running its graph as saved"
                );
                return;
            }
            Err(e) => {
                tracing::warn!("model {model} fails a second run of its test batch ({e:#})");
                return;
            }
        }
        let inference = graph == GraphOptimization::Inference;
        let optimized = match self.module.optimized(inference) {
            Ok(m) => m,
            Err(e) => {
                let e = torch_error(e, &format!("model {model} cannot be frozen"));
                tracing::warn!("{e:#}; running its graph as saved");
                return;
            }
        };
        let saved = std::mem::replace(&mut self.module, optimized);
        let why = match self.difference_from(input, reference) {
            Ok(d) if d <= GRAPH_TOLERANCE => {
                self.graph = graph;
                return;
            }
            Ok(d) => format!(
                "changes its outputs by up to {d:.2e} (more than {GRAPH_TOLERANCE:.0e} of their \
                 scale)"
            ),
            Err(e) => format!("fails ({e:#})"),
        };
        tracing::warn!("model {model} with its graph optimised {why}; running its graph as saved");
        self.module = saved;
    }

    /// [`largest_difference`] between the module's outputs for `input` and `reference`.
    fn difference_from(&self, input: &Tensor, reference: &Outputs) -> Result<f64> {
        largest_difference(&self.forward(input)?, reference)
    }

    /// How the forward pass runs, in words: device, precision, layout, graph, staging and
    /// stream.
    pub fn run_mode(&self) -> String {
        let mut words = vec![
            format!("on {:?}", self.device),
            (if self.half { "fp16 (CUDA autocast)" } else { "fp32" }).to_owned(),
            (if self.channels_last { "channels_last (NHWC)" } else { "contiguous (NCHW)" })
                .to_owned(),
            match self.graph {
                GraphOptimization::Inference => "graph frozen with inference passes",
                GraphOptimization::Freeze => "graph frozen",
                GraphOptimization::None | GraphOptimization::Auto => "graph as saved",
            }
            .to_owned(),
        ];
        if self.device.is_cuda() {
            words.push("pinned staging".to_owned());
            words.push(
                (if self.stream.is_some() { "own CUDA stream" } else { "default CUDA stream" })
                    .to_owned(),
            );
        }
        words.join(", ")
    }

    /// Normalises `n` crops of packed RGB into the staging buffer and returns the batch on the
    /// model's device, `[n, 3, s, s]`, channels-last when so chosen. On the CPU the batch is
    /// the buffer itself; on CUDA the copy is asynchronous on the current stream. Either way
    /// the caller must hold `staging` (the buffer, made or grown here) until it has read the
    /// batch's results back, which waits for both.
    fn stage(&self, staging: &mut Option<Tensor>, crops: &[u8], n: usize) -> Result<Tensor> {
        let s = self.meta.input_size as usize;
        let per = s * s * 3;
        let numel = n * per;
        let big_enough = staging.as_ref().is_some_and(|t| t.numel() >= numel);
        if !big_enough {
            // Dropped first, so a grown buffer does not need the old one's memory beside it.
            *staging = None;
            // Zeros, not `empty`: the slice below must never view uninitialised memory.
            let host = Tensor::f_zeros([numel as i64], (Kind::Float, Device::Cpu))
                .map_err(|e| torch_error(e, &format!("cannot allocate {numel} floats to stage")))?;
            let host = match self.device {
                Device::Cuda(_) => host.f_pin_memory(self.device).map_err(|e| {
                    torch_error(e, &format!("cannot page-lock {numel} floats to stage"))
                })?,
                _ => host,
            };
            *staging = Some(host);
        }
        let Some(buffer) = staging.as_ref() else {
            bail!("no staging buffer for {}", self.path.display());
        };
        // SAFETY: `buffer` is a contiguous, zero-filled CPU float tensor of at least `numel`
        // elements, made above and never resized. The caller holds `staging` exclusively until
        // this batch's results are read back (or its failure waited for), so no other batch,
        // nor a copy or forward pass of an earlier one, reads or writes it while it is written
        // here.
        let floats =
            unsafe { std::slice::from_raw_parts_mut(buffer.data_ptr().cast::<f32>(), numel) };
        let (mean, std) = (self.meta.mean, self.meta.std);
        for (crop, out) in crops.chunks_exact(per).zip(floats.chunks_exact_mut(per)) {
            if self.channels_last {
                normalise_rgb_interleaved(crop, mean, std, out);
            } else {
                normalise_rgb_planar(crop, mean, std, out);
            }
        }
        let (n, s) = (n as i64, s as i64);
        let batch = buffer.f_narrow(0, 0, numel as i64)?;
        let batch = if self.channels_last {
            batch.f_view_([n, s, s, 3])?.f_permute([0, 3, 1, 2])?
        } else {
            batch.f_view_([n, 3, s, s])?
        };
        Ok(match self.device {
            Device::Cpu => batch,
            device => batch.f_to_device_(device, Kind::Float, true, false).map_err(|e| {
                torch_error(e, &format!("cannot copy a batch of {n} crops to {device:?}"))
            })?,
        })
    }

    /// Waits for the work this classifier queued on CUDA: its own stream's, or the whole
    /// device's when it has none. Nothing to wait for on the CPU.
    fn synchronize(&self) -> Result<()> {
        match (self.device, &self.stream) {
            (Device::Cuda(_), Some(stream)) => stream.synchronize(),
            (Device::Cuda(i), None) => {
                tch::Cuda::synchronize(i as i64);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The model's metadata (labels, input size, normalisation).
    pub fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the module and splits its output into logits and, when the metadata says the
    /// model has them, features.
    fn forward(&self, input: &Tensor) -> Result<Outputs> {
        let _guard = tch::no_grad_guard();
        let out = if self.half {
            tch::autocast(true, || self.module.forward(input))
        } else {
            self.module.forward(input)
        }
        .map_err(|e| torch_error(e, &format!("model {} failed", self.path.display())))?;
        let model = self.path.display();
        if out.is_sparse() || out.is_mkldnn() {
            bail!("model {model} outputs a sparse or oneDNN tensor, not a dense one");
        }
        if !out.is_floating_point() {
            bail!("model {model} outputs {:?} values, not floating-point scores", out.kind());
        }
        let k = self.meta.labels.len() as i64;
        let f = self.meta.feature_columns as i64;
        let width = out.size().last().copied().unwrap_or(0);
        if out.dim() != 2 || width != k + f {
            bail!(
                "model {model} outputs shape {:?} but its metadata lists {k} labels and {f} \
                 feature columns",
                out.size()
            );
        }
        let rows = input.size().first().copied().unwrap_or(0);
        if out.size()[0] != rows {
            bail!("model {model} gives {} rows of scores for {rows} crops", out.size()[0]);
        }
        let slice = |start, len| {
            out.f_narrow(1, start, len)
                .map_err(|e| torch_error(e, &format!("cannot slice model {model}'s output")))
        };
        let features = if f > 0 { Some(slice(k, f)?) } else { None };
        Ok(Outputs { logits: slice(0, k)?, features })
    }

    /// Classifies crops given as packed RGB bytes of `input_size`² pixels each, in one batch.
    pub fn classify_rgb(&self, crops: &[u8]) -> Result<Vec<Prediction>> {
        self.classify_rgb_timed(crops).map(|(p, _)| p)
    }

    /// [`Self::classify_rgb`], also saying how long normalising and the forward pass took.
    pub fn classify_rgb_timed(&self, crops: &[u8]) -> Result<(Vec<Prediction>, ClassifyTimes)> {
        let s = self.meta.input_size as usize;
        let per = s * s * 3;
        let mut times = ClassifyTimes::default();
        if crops.is_empty() {
            return Ok((Vec::new(), times));
        }
        let t0 = Instant::now();
        if !crops.len().is_multiple_of(per) {
            bail!(
                "crop buffer of {} bytes is not a whole number of {s}x{s} RGB crops",
                crops.len()
            );
        }
        let n = crops.len() / per;
        if let Some(stream) = &self.stream {
            // Per thread in libtorch: the thread that classifies may not be the one that
            // loaded the model.
            stream.make_current()?;
        }
        // A batch that panicked poisons the lock, but leaves nothing the next batch reads:
        // every batch writes all it uses.
        let mut staging = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        let input = self.stage(&mut staging, crops, n)?;
        let t1 = Instant::now();
        let out = self.forward(&input);
        // Kernels run asynchronously; the time is the forward pass's only once they end. Also
        // after a failed pass, whose batch may still be copying out of the staging buffer.
        self.synchronize()?;
        let out = out?;
        times = ClassifyTimes { normalise: t1 - t0, forward: t1.elapsed() };
        let logits = rows(&out.logits)?;
        if logits.iter().flatten().any(|l| !l.is_finite()) {
            bail!("model {} gives NaN or infinite scores for this batch", self.path.display());
        }
        let features = match &out.features {
            Some(f) => rows(f)?,
            None => vec![Vec::new(); logits.len()],
        };
        if logits.len() != n || features.len() != n {
            bail!("model {} gave {} rows for {n} crops", self.path.display(), logits.len());
        }
        let predictions = logits
            .into_iter()
            .zip(features)
            .map(|(logits, features)| {
                let probs = softmax(&logits);
                let (class, confidence) = probs
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or((0, 0.0), |(i, p)| (i, *p));
                Prediction { class, confidence, probs, logits, features }
            })
            .collect();
        Ok((predictions, times))
    }
}

/// Where a batch's classification time went, for the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClassifyTimes {
    /// Crops to normalised planar floats, on the model's device.
    pub normalise: Duration,
    /// The model's forward pass, to the end of its kernels.
    pub forward: Duration,
}

/// Batch of one more than a single crop, so a module that only works on a batch of one fails
/// at load time rather than on the first frame with two coins.
const TRACE_CHECK_BATCH: usize = 2;

/// How far an optimised graph's outputs may be from the saved graph's, as a share of the
/// largest output. Folding batch norms and oneDNN's convolutions move ResNet-50's outputs by
/// about 1e-6 of it; a wrong pass moves them by far more.
const GRAPH_TOLERANCE: f64 = 1e-3;

/// The largest difference between two outputs of the same batch, logits and features alike,
/// as a share of the largest of `reference`'s values (or of 1, when they are all smaller).
fn largest_difference(out: &Outputs, reference: &Outputs) -> Result<f64> {
    let pairs = [
        (Some(&out.logits), Some(&reference.logits)),
        (out.features.as_ref(), reference.features.as_ref()),
    ];
    let mut worst = 0.0f64;
    for (a, b) in pairs {
        let (Some(a), Some(b)) = (a, b) else { continue };
        let compared = (|| {
            let (a, b) = (a.f_to_kind(Kind::Double)?, b.f_to_kind(Kind::Double)?);
            let scale = b.f_abs()?.f_max()?.double_value(&[]).max(1.0);
            let diff = a.f_sub(&b)?.f_abs()?.f_max()?.double_value(&[]);
            Ok::<_, tch::TchError>(diff / scale)
        })()
        .map_err(|e| torch_error(e, "cannot compare two outputs"))?;
        if !compared.is_finite() {
            return Ok(f64::INFINITY);
        }
        worst = worst.max(compared);
    }
    Ok(worst)
}

/// Whether every logit and feature of `out` is a finite number.
fn all_finite(out: &Outputs) -> Result<bool> {
    for t in std::iter::once(&out.logits).chain(out.features.as_ref()) {
        let finite = t
            .f_isfinite()
            .and_then(|f| f.f_all())
            .map_err(|e| torch_error(e, "cannot check outputs for NaN"))?;
        if !bool::try_from(finite).map_err(|e| torch_error(e, "cannot read a check back"))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rows of a 2-D tensor as `f32` vectors, on the CPU.
pub fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let (n, d) = t.size2().context("expected a [N, D] tensor")?;
    let host = t
        .f_to_device_(Device::Cpu, Kind::Float, false, false)
        .and_then(|h| h.f_contiguous())
        .and_then(|h| h.f_view_([-1]))
        .map_err(|e| torch_error(e, "cannot read model outputs back"))?;
    let flat: Vec<f32> = Vec::try_from(host)?;
    if d <= 0 {
        return Ok(vec![Vec::new(); n.max(0) as usize]);
    }
    Ok(flat.chunks_exact(d as usize).map(<[f32]>::to_vec).collect())
}

/// `what`, with the reason libtorch gave for `e`. Its messages carry a backtrace, and for
/// TorchScript a serialised-code traceback, after the first line; the reason is the first line
/// or, past such a traceback, the last `...Error: ` line.
pub fn torch_error(e: tch::TchError, what: &str) -> anyhow::Error {
    let text = e.to_string();
    // tch's own prefix says nothing the caller's words do not.
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("Internal torch error: ").unwrap_or(first);
    let reason = if first.contains("failed in the TorchScript interpreter") {
        text.lines()
            .rev()
            .find_map(|l| l.split_once("Error: ").filter(|(kind, _)| !kind.contains(' ')))
            .map_or(first, |(_, why)| why)
    } else {
        first
    };
    anyhow::anyhow!("{what}: {}", reason.trim())
}

/// Softmax of one logit row, computed without overflow.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_errors_keep_the_reason_and_drop_the_traceback() {
        let script = "The following operation failed in the TorchScript interpreter.\n\
                      Traceback of TorchScript, serialized code (most recent call last):\n  \
                      File \"code/__torch__.py\", line 9, in forward\n    \
                      _0 = torch._convolution(x, CONSTANTS.c0)\n\
                      RuntimeError: DefaultCPUAllocator: can't allocate memory: 4 bytes\n";
        let e = torch_error(tch::TchError::Torch(script.into()), "model m.pt failed");
        assert_eq!(
            e.to_string(),
            "model m.pt failed: DefaultCPUAllocator: can't allocate memory: 4 bytes"
        );
        let plain = "open file failed because of errno 2\nException raised from x at y.cpp:1";
        let e = torch_error(tch::TchError::Torch(plain.into()), "cannot load TorchScript model m");
        assert_eq!(
            e.to_string(),
            "cannot load TorchScript model m: open file failed because of errno 2"
        );
    }
}
