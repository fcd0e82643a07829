//! ResNet-50 (bottleneck blocks, BatchNorm) on a `tch` VarStore.
//!
//! Variable names follow torchvision's (`conv1`, `layer1.0.conv2`, `layer2.0.downsample.1`,
//! `fc`), so weights converted from torchvision load into this network unchanged.

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Tensor, nn::init};

/// Bottleneck blocks per stage in ResNet-50.
pub const RESNET50_BLOCKS: [usize; 4] = [3, 4, 6, 3];
/// Channel width of the first stage in the real ResNet-50.
pub const RESNET50_BASE_WIDTH: i64 = 64;
/// A bottleneck block outputs this many times its inner width.
pub const EXPANSION: i64 = 4;

/// A top-level part of the network, in input-to-output order, named as its variables' first
/// path component (`conv1.weight`, `layer3.2.bn1.running_mean`, `fc.bias`).
///
/// The order is the order of the forward pass, so "up to and including part P" is `<= P`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The 7x7 stem convolution.
    Conv1,
    /// The stem BatchNorm.
    Bn1,
    /// First bottleneck stage.
    Layer1,
    /// Second bottleneck stage.
    Layer2,
    /// Third bottleneck stage.
    Layer3,
    /// Fourth bottleneck stage.
    Layer4,
    /// The linear classifier head.
    Fc,
}

impl Part {
    /// Every part, in forward order.
    pub const ALL: [Part; 7] =
        [Part::Conv1, Part::Bn1, Part::Layer1, Part::Layer2, Part::Layer3, Part::Layer4, Part::Fc];

    /// The name used in variable paths and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Part::Conv1 => "conv1",
            Part::Bn1 => "bn1",
            Part::Layer1 => "layer1",
            Part::Layer2 => "layer2",
            Part::Layer3 => "layer3",
            Part::Layer4 => "layer4",
            Part::Fc => "fc",
        }
    }

    /// The part a VarStore variable belongs to, from the first component of its name; `None`
    /// for a name outside the network.
    pub fn of_variable(name: &str) -> Option<Part> {
        let first = name.split('.').next()?;
        Part::ALL.into_iter().find(|p| p.name() == first)
    }

    /// The bottleneck stage (0-based) this part is, if it is one.
    fn stage(self) -> Option<usize> {
        match self {
            Part::Layer1 => Some(0),
            Part::Layer2 => Some(1),
            Part::Layer3 => Some(2),
            Part::Layer4 => Some(3),
            _ => None,
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// VarStore group of parameters that get no weight decay (BatchNorm scales and shifts):
/// decaying them only fights the normalisation.
pub const NO_DECAY_GROUP: usize = 1;

/// Kaiming-normal with fan-out, as torchvision initialises ResNet convolutions; it keeps the
/// gradient scale steady through the deep stack when training from scratch.
const CONV_INIT: init::Init = init::Init::Kaiming {
    dist: init::NormalOrUniform::Normal,
    fan: init::FanInOut::FanOut,
    non_linearity: init::NonLinearity::ReLU,
};

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ws_init: CONV_INIT,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// `zero_scale` starts the BatchNorm as the zero map: a residual block whose last BatchNorm
/// is zero begins as the identity, which makes a deep net from scratch train like a shallow one
/// first.
fn batch_norm(p: nn::Path, channels: i64, zero_scale: bool) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: init::Init::Const(if zero_scale { 0.0 } else { 1.0 }),
        bs_init: init::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p.set_group(NO_DECAY_GROUP), channels, cfg)
}

/// 1x1 reduce, 3x3 (carrying the stride), 1x1 expand, plus a projection shortcut when the
/// shape changes.
#[derive(Debug)]
struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Bottleneck {
    fn new(p: &nn::Path, cin: i64, width: i64, stride: i64) -> Self {
        let cout = width * EXPANSION;
        let downsample = (stride != 1 || cin != cout).then(|| {
            let d = p / "downsample";
            (conv(&d / "0", cin, cout, 1, stride), batch_norm(&d / "1", cout, false))
        });
        Self {
            conv1: conv(p / "conv1", cin, width, 1, 1),
            bn1: batch_norm(p / "bn1", width, false),
            conv2: conv(p / "conv2", width, width, 3, stride),
            bn2: batch_norm(p / "bn2", width, false),
            conv3: conv(p / "conv3", width, cout, 1, 1),
            bn3: batch_norm(p / "bn3", cout, true),
            downsample,
        }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let ys = ys.apply(&self.conv2).apply_t(&self.bn2, train).relu();
        let ys = ys.apply(&self.conv3).apply_t(&self.bn3, train);
        let shortcut = match &self.downsample {
            Some((c, bn)) => xs.apply(c).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu()
    }
}

/// A ResNet-50-shaped classifier: 7x7 stem, max-pool, four bottleneck stages
/// ([`RESNET50_BLOCKS`]) of widths `w, 2w, 4w, 8w`, global average pool, linear head.
///
/// Input: `[N, 3, H, W]` normalised RGB; output: `[N, num_classes]` logits. The head flattens
/// with `flatten(1, -1)`, never a view built from the traced batch size, so a traced copy
/// accepts any `N`. In training mode BatchNorm needs more than one value per channel, so
/// batches of one only work in evaluation mode.
///
/// Parts up to [`ResNet::frozen_until`] run their BatchNorm in evaluation mode even in
/// training mode, so their running statistics stay as loaded.
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    stages: Vec<Vec<Bottleneck>>,
    fc: nn::Linear,
    num_classes: i64,
    feature_dim: usize,
    frozen_until: Option<Part>,
}

impl ResNet {
    /// Creates the network's variables under `p`. `base_width` is the first stage's width
    /// ([`RESNET50_BASE_WIDTH`] for the real ResNet-50; small values give a tiny net of the same
    /// structure for tests). Both arguments must be positive.
    pub fn new(p: &nn::Path, base_width: i64, num_classes: i64) -> Result<Self> {
        ensure!(base_width > 0, "base_width {base_width} must be positive");
        ensure!(num_classes > 0, "num_classes {num_classes} must be positive");
        let conv1 = conv(p / "conv1", 3, base_width, 7, 2);
        let bn1 = batch_norm(p / "bn1", base_width, false);
        let mut stages = Vec::new();
        let mut cin = base_width;
        for (stage, &count) in RESNET50_BLOCKS.iter().enumerate() {
            let width = base_width << stage;
            let sp = p / format!("layer{}", stage + 1);
            let mut blocks = Vec::new();
            for i in 0..count {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                blocks.push(Bottleneck::new(&(&sp / i), cin, width, stride));
                cin = width * EXPANSION;
            }
            stages.push(blocks);
        }
        let fc = nn::linear(p / "fc", cin, num_classes, Default::default());
        let feature_dim = usize::try_from(cin).unwrap_or(0);
        Ok(Self { conv1, bn1, stages, fc, num_classes, feature_dim, frozen_until: None })
    }

    /// Length of [`ResNet::features_t`]'s output per image.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// Number of output columns (classes).
    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// The last frozen part, if any (see [`ResNet::freeze_until`]).
    pub fn frozen_until(&self) -> Option<Part> {
        self.frozen_until
    }

    /// Freezes every part up to and including `last`: their variables in `vs` (the store this
    /// network was built in) stop requiring gradients, and their BatchNorms stay in evaluation
    /// mode. Returns the number of variables frozen. `last` must come before [`Part::Fc`], so
    /// something is left to train.
    pub fn freeze_until(&mut self, vs: &nn::VarStore, last: Part) -> Result<usize> {
        ensure!(last < Part::Fc, "freezing up to {last} would leave nothing to train");
        let mut frozen = 0;
        for (name, var) in vs.variables() {
            if Part::of_variable(&name).is_some_and(|p| p <= last) {
                // Running statistics never require gradients; this leaves them as they are.
                let _ = var.set_requires_grad(false);
                frozen += 1;
            }
        }
        self.frozen_until = Some(last);
        Ok(frozen)
    }

    /// Whether `part` runs in training mode when the network does.
    fn trains(&self, part: Part, train: bool) -> bool {
        train && self.frozen_until.is_none_or(|last| part > last)
    }
}

impl ResNet {
    /// The penultimate features: the pooled output of the last stage, `[N, 32 * base_width]`
    /// (2048 for ResNet-50). The shift monitor models their distribution.
    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let bn1_train = self.trains(Part::Bn1, train);
        let mut ys = xs.apply(&self.conv1).apply_t(&self.bn1, bn1_train).relu().max_pool2d(
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            false,
        );
        for (part, stage) in Part::ALL.into_iter().filter_map(|p| p.stage().map(|s| (p, s))) {
            let stage_train = self.trains(part, train);
            for block in &self.stages[stage] {
                ys = block.forward_t(&ys, stage_train);
            }
        }
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// The classifier head: logits from [`ResNet::features_t`]'s output.
    pub fn head(&self, features: &Tensor) -> Tensor {
        features.apply(&self.fc)
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.head(&self.features_t(xs, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn real_resnet50_has_the_reference_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        ResNet::new(&vs.root(), RESNET50_BASE_WIDTH, 1000).unwrap();
        let params: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        // torchvision's resnet50 with 1000 classes: 25,557,032 parameters.
        assert_eq!(params, 25_557_032);
    }

    #[test]
    fn output_has_one_column_per_class_for_any_batch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), 4, 5).unwrap();
        for n in [1, 3] {
            let xs = Tensor::randn([n, 3, 32, 32], (Kind::Float, Device::Cpu));
            assert_eq!(net.forward_t(&xs, false).size(), [n, 5]);
        }
    }

    #[test]
    fn every_variable_belongs_to_a_part_in_forward_order() {
        let vs = nn::VarStore::new(Device::Cpu);
        ResNet::new(&vs.root(), 4, 3).unwrap();
        let names = vs.variables();
        assert!(names.keys().all(|n| Part::of_variable(n).is_some()), "{:?}", names.keys());
        assert_eq!(Part::of_variable("layer3.2.bn1.running_mean"), Some(Part::Layer3));
        assert_eq!(Part::of_variable("bn1.weight"), Some(Part::Bn1));
        assert_eq!(Part::of_variable("fc"), Some(Part::Fc));
        assert_eq!(Part::of_variable("layer5.0.conv1.weight"), None);
        assert!(Part::Conv1 < Part::Bn1 && Part::Layer4 < Part::Fc);
    }

    #[test]
    fn freezing_stops_gradients_up_to_the_part_and_refuses_the_head() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = ResNet::new(&vs.root(), 4, 3).unwrap();
        assert!(net.freeze_until(&vs, Part::Fc).is_err());
        let frozen = net.freeze_until(&vs, Part::Layer2).unwrap();
        // A block has 3 convolutions and 3 BatchNorms of 4 variables each, a downsample 1 + 4:
        // conv1 + bn1 + layer1 (3 blocks + downsample) + layer2 (4 blocks + downsample).
        assert_eq!(frozen, 1 + 4 + (3 * 15 + 5) + (4 * 15 + 5));
        for (name, var) in vs.variables() {
            let part = Part::of_variable(&name).unwrap();
            let trainable = !name.ends_with("running_mean") && !name.ends_with("running_var");
            assert_eq!(var.requires_grad(), trainable && part > Part::Layer2, "{name}");
        }
        assert_eq!(net.frozen_until(), Some(Part::Layer2));
    }

    #[test]
    fn rejects_non_positive_sizes() {
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(ResNet::new(&vs.root(), 0, 3).is_err());
        assert!(ResNet::new(&vs.root(), 8, 0).is_err());
    }
}
