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

/// Tries once per process to load `libtorch_cuda.so`; returns whether CUDA is usable.
fn cuda_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
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
            return false;
        }
        tch::Cuda::is_available()
    })
}

/// Resolves a preference to a device. `Auto` falls back to CPU with one log line per process.
pub fn select(pref: DevicePref) -> Result<Device> {
    match pref {
        DevicePref::Cpu => Ok(Device::Cpu),
        DevicePref::Cuda => {
            if cuda_usable() {
                Ok(Device::Cuda(0))
            } else {
                bail!("device is cuda but no usable CUDA device or libtorch_cuda.so was found")
            }
        }
        DevicePref::Auto => {
            if cuda_usable() {
                Ok(Device::Cuda(0))
            } else {
                static LOGGED: OnceLock<()> = OnceLock::new();
                LOGGED.get_or_init(|| {
                    tracing::info!("CUDA is not available; running the model on the CPU");
                });
                Ok(Device::Cpu)
            }
        }
    }
}
