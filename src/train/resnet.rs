//! ResNet-50 (bottleneck blocks, BatchNorm) on a `tch` VarStore.
//!
//! Variable names follow torchvision's (`conv1`, `layer1.0.conv2`, `layer2.0.downsample.1`,
//! `fc`), so weights converted from torchvision load into this network unchanged.

use anyhow::{Result, ensure};
use tch::nn::{self, ModuleT};
use tch::{Tensor, nn::init};

/// Bottleneck blocks per stage in ResNet-50.
pub const RESNET50_BLOCKS: [usize; 4] = [3, 4, 6, 3];
/// Channel width of the first stage in the real ResNet-50.
pub const RESNET50_BASE_WIDTH: i64 = 64;
/// A bottleneck block outputs this many times its inner width.
pub const EXPANSION: i64 = 4;

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
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<Bottleneck>,
    fc: nn::Linear,
    num_classes: i64,
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
        let mut blocks = Vec::new();
        let mut cin = base_width;
        for (stage, &count) in RESNET50_BLOCKS.iter().enumerate() {
            let width = base_width << stage;
            let sp = p / format!("layer{}", stage + 1);
            for i in 0..count {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                blocks.push(Bottleneck::new(&(&sp / i), cin, width, stride));
                cin = width * EXPANSION;
            }
        }
        let fc = nn::linear(p / "fc", cin, num_classes, Default::default());
        Ok(Self { conv1, bn1, blocks, fc, num_classes })
    }

    /// Number of output columns (classes).
    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu().max_pool2d(
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            false,
        );
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
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
    fn rejects_non_positive_sizes() {
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(ResNet::new(&vs.root(), 0, 3).is_err());
        assert!(ResNet::new(&vs.root(), 8, 0).is_err());
    }
}
