//! Choosing where the model runs, and making CUDA visible to libtorch at run time.
//!
//! The linker's `--as-needed` drops `libtorch_cuda.so` from our binaries because no symbol of
//! it is referenced directly, so libtorch never registers its CUDA backend and CUDA looks
//! absent even on a GPU machine. Loading the library ourselves (with `RTLD_GLOBAL`, so its
//! static initialisers register the backend) lets one binary serve CPU and GPU machines.

use std::sync::OnceLock;

use anyhow::{Result, bail};
use tch::Device;

/// Where the user asked the model to run (`device` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePref {
    /// CUDA when it is usable, else CPU (logged once).
    Auto,
    /// CPU only; CUDA is never loaded.
    Cpu,
    /// CUDA, or fail.
    Cuda,
}

impl std::str::FromStr for DevicePref {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "cpu" => Self::Cpu,
            "cuda" => Self::Cuda,
            other => bail!("device {other:?} is not one of auto, cpu, cuda"),
        })
    }
}

/// Tries once per process to load `libtorch_cuda.so`; returns whether CUDA is usable, or why
/// not.
fn cuda_usable() -> std::result::Result<(), &'static str> {
    static USABLE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let usable = USABLE.get_or_init(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: `name` is a valid NUL-terminated string; dlopen has no other preconditions.
        // The handle is deliberately never closed: libtorch keeps pointers into the library.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns NULL or a pointer to a NUL-terminated string owned by libc.
            let err = unsafe { libc::dlerror() };
            let reason = if err.is_null() {
                "unknown reason".to_string()
            } else {
                // SAFETY: checked non-null above; libc guarantees NUL termination.
                unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned()
            };
            tracing::debug!("libtorch_cuda.so not loaded: {reason}");
            return Err(format!("libtorch_cuda.so could not be loaded ({reason})"));
        }
        if tch::Cuda::is_available() {
            Ok(())
        } else {
            Err("libtorch_cuda.so is loaded but libtorch sees no CUDA device".to_string())
        }
    });
    usable.as_ref().map(|_| ()).map_err(String::as_str)
}

/// Resolves a preference to a device. `Auto` falls back to CPU with one log line per process.
pub fn select(pref: DevicePref) -> Result<Device> {
    match pref {
        DevicePref::Cpu => Ok(Device::Cpu),
        DevicePref::Cuda => match cuda_usable() {
            Ok(()) => Ok(Device::Cuda(0)),
            Err(why) => bail!("device is cuda but CUDA is not usable: {why}"),
        },
        DevicePref::Auto => match cuda_usable() {
            Ok(()) => Ok(Device::Cuda(0)),
            Err(why) => {
                static LOGGED: OnceLock<()> = OnceLock::new();
                LOGGED.get_or_init(|| {
                    tracing::info!("CUDA is not usable ({why}); running the model on the CPU");
                });
                Ok(Device::Cpu)
            }
        },
    }
}

/// Numeric precision of the forward pass (`precision` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Half precision on CUDA, single on the CPU.
    Auto,
    /// Single precision everywhere.
    Fp32,
    /// Half precision through CUDA autocast (convolutions and matrix products in fp16, the
    /// rest as libtorch's autocast lists say). On the CPU it falls back to fp32, logged once.
    Fp16,
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "fp32" => Self::Fp32,
            "fp16" => Self::Fp16,
            other => bail!("precision {other:?} is not one of auto, fp32, fp16"),
        })
    }
}

/// Memory layout of the batch handed to the model (`memory_format` parameter), named as
/// PyTorch names its memory formats. Words, not on/off: rcl's YAML reads a bare `on` or `off`
/// as a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryFormat {
    /// Channels-last on CUDA, where cuDNN's fp16 convolutions prefer it; contiguous (NCHW) on
    /// the CPU, where channels-last measured slower per frame (docs/performance.md).
    Auto,
    /// Channels-last (NHWC in memory) on every device.
    ChannelsLast,
    /// Contiguous NCHW on every device.
    Contiguous,
}

impl std::str::FromStr for MemoryFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "channels_last" => Self::ChannelsLast,
            "contiguous" => Self::Contiguous,
            other => bail!("memory_format {other:?} is not one of auto, channels_last, contiguous"),
        })
    }
}

/// What libtorch does to the model's graph when it loads (`graph_optimization` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphOptimization {
    /// `inference` on the CPU, `freeze` on CUDA: the inference passes have not been measured
    /// on a GPU with this package's half-precision autocast.
    Auto,
    /// Frozen, then libtorch's inference passes (`torch.jit.optimize_for_inference`).
    Inference,
    /// Frozen only (`torch.jit.freeze`): weights become constants, batch norms fold into the
    /// convolutions.
    Freeze,
    /// The graph runs as saved.
    None,
}

impl std::str::FromStr for GraphOptimization {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "inference" => Self::Inference,
            "freeze" => Self::Freeze,
            "none" => Self::None,
            other => {
                bail!("graph_optimization {other:?} is not one of auto, inference, freeze, none")
            }
        })
    }
}

/// How a model is loaded and run: where, in what precision, in what memory layout, with what
/// done to its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub device: DevicePref,
    pub precision: Precision,
    pub memory_format: MemoryFormat,
    pub graph: GraphOptimization,
}

impl RunOptions {
    /// `device`, with precision, layout and graph optimisation chosen for it (all `auto`).
    pub fn on(device: DevicePref) -> Self {
        Self {
            device,
            precision: Precision::Auto,
            memory_format: MemoryFormat::Auto,
            graph: GraphOptimization::Auto,
        }
    }

    /// The graph optimisation used on `device`: `auto` resolved, the others as asked.
    pub fn graph_on(&self, device: Device) -> GraphOptimization {
        match self.graph {
            GraphOptimization::Auto if device.is_cuda() => GraphOptimization::Freeze,
            GraphOptimization::Auto => GraphOptimization::Inference,
            chosen => chosen,
        }
    }

    /// Whether the forward pass runs in half precision on `device`. Asking for fp16 on the
    /// CPU gives fp32 and one log line per process: tch's autocast is CUDA only.
    pub fn half_on(&self, device: Device) -> bool {
        let cuda = device.is_cuda();
        match self.precision {
            Precision::Fp32 => false,
            Precision::Auto => cuda,
            Precision::Fp16 if cuda => true,
            Precision::Fp16 => {
                static LOGGED: OnceLock<()> = OnceLock::new();
                LOGGED.get_or_init(|| {
                    tracing::warn!("precision is fp16 but the model runs on the CPU; using fp32");
                });
                false
            }
        }
    }

    /// Whether batches are laid out channels-last on `device`.
    pub fn channels_last_on(&self, device: Device) -> bool {
        match self.memory_format {
            MemoryFormat::Auto => device.is_cuda(),
            MemoryFormat::ChannelsLast => true,
            MemoryFormat::Contiguous => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_fp16_and_channels_last_on_cuda_only() {
        let auto = RunOptions::on(DevicePref::Auto);
        assert!(auto.half_on(Device::Cuda(0)));
        assert!(!auto.half_on(Device::Cpu));
        assert!(auto.channels_last_on(Device::Cuda(0)));
        assert!(!auto.channels_last_on(Device::Cpu));
        assert_eq!(auto.graph_on(Device::Cuda(0)), GraphOptimization::Freeze);
        assert_eq!(auto.graph_on(Device::Cpu), GraphOptimization::Inference);
    }

    #[test]
    fn explicit_choices_hold_except_fp16_on_the_cpu() {
        let mut o = RunOptions::on(DevicePref::Cpu);
        o.precision = Precision::Fp16;
        assert!(!o.half_on(Device::Cpu));
        assert!(o.half_on(Device::Cuda(1)));
        o.precision = Precision::Fp32;
        assert!(!o.half_on(Device::Cuda(0)));
        o.memory_format = MemoryFormat::ChannelsLast;
        assert!(o.channels_last_on(Device::Cpu));
        o.memory_format = MemoryFormat::Contiguous;
        assert!(!o.channels_last_on(Device::Cuda(0)));
        for g in [GraphOptimization::Inference, GraphOptimization::Freeze, GraphOptimization::None]
        {
            o.graph = g;
            assert_eq!(o.graph_on(Device::Cpu), g);
            assert_eq!(o.graph_on(Device::Cuda(0)), g);
        }
    }

    #[test]
    fn parses_the_documented_values_and_names_a_wrong_one() {
        assert_eq!("fp16".parse::<Precision>().unwrap(), Precision::Fp16);
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::Fp32);
        assert_eq!("auto".parse::<Precision>().unwrap(), Precision::Auto);
        let f = |s: &str| s.parse::<MemoryFormat>().unwrap();
        assert_eq!(f("channels_last"), MemoryFormat::ChannelsLast);
        assert_eq!(f("contiguous"), MemoryFormat::Contiguous);
        assert_eq!(f("auto"), MemoryFormat::Auto);
        let err = "half".parse::<Precision>().unwrap_err().to_string();
        assert_eq!(err, "precision \"half\" is not one of auto, fp32, fp16");
        let err = "on".parse::<MemoryFormat>().unwrap_err().to_string();
        assert_eq!(err, "memory_format \"on\" is not one of auto, channels_last, contiguous");
        let g = |s: &str| s.parse::<GraphOptimization>().unwrap();
        assert_eq!(g("auto"), GraphOptimization::Auto);
        assert_eq!(g("inference"), GraphOptimization::Inference);
        assert_eq!(g("freeze"), GraphOptimization::Freeze);
        assert_eq!(g("none"), GraphOptimization::None);
        let err = "off".parse::<GraphOptimization>().unwrap_err().to_string();
        assert_eq!(err, "graph_optimization \"off\" is not one of auto, inference, freeze, none");
    }
}
