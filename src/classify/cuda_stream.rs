//! A CUDA stream of the classifier's own, through the C++ shim in `cuda_stream.cpp` (tch has
//! no stream API).
//!
//! libtorch runs every kernel on the calling thread's current stream, which is the device's
//! default stream unless set. The default (legacy) stream synchronises with every other stream
//! of the process, so a classifier sharing a process with other CUDA work would wait on it.

use anyhow::{Result, anyhow, bail};

/// A stream taken from libtorch's pool for one device. Streams of the pool live as long as the
/// process, so this handle needs no clean-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaStream {
    device: i32,
    id: i64,
}

/// The shim's entry points. Each returns 0, or -1 with c10's message in `err` (at most `len`
/// bytes, NUL included); none lets a C++ exception through.
mod ffi {
    use std::ffi::{c_char, c_int};

    unsafe extern "C" {
        pub fn coin_sorter_cuda_stream_new(
            device: c_int,
            id: *mut i64,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn coin_sorter_cuda_stream_set(
            device: c_int,
            id: i64,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn coin_sorter_cuda_stream_synchronize(
            device: c_int,
            id: i64,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
    }
}

/// Room for the first line of a c10 error message.
const ERR_LEN: usize = 512;

/// Calls one shim entry point with an error buffer; its message when it fails.
fn shim(call: impl FnOnce(*mut std::ffi::c_char, usize) -> std::ffi::c_int) -> Result<(), String> {
    let mut err = [0u8; ERR_LEN];
    if call(err.as_mut_ptr().cast(), ERR_LEN) == 0 {
        return Ok(());
    }
    let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    Err(String::from_utf8_lossy(&err[..end]).into_owned())
}

impl CudaStream {
    /// Takes a stream from libtorch's pool for CUDA device `device`. Fails with c10's reason
    /// when there is no such device.
    pub fn new(device: usize) -> Result<Self> {
        // c10 keeps device indices in an i8.
        let Ok(dev) = i8::try_from(device).map(i32::from) else {
            bail!("CUDA device index {device} is out of range (at most {})", i8::MAX);
        };
        let mut id = 0i64;
        // SAFETY: `id` is valid for a write, and `shim` passes a buffer valid for `len` bytes
        // of writes; the shim writes at most that many and catches every C++ exception.
        shim(|err, len| unsafe { ffi::coin_sorter_cuda_stream_new(dev, &mut id, err, len) })
            .map_err(|why| anyhow!("cannot take a CUDA stream for device {device}: {why}"))?;
        Ok(Self { device: dev, id })
    }

    /// Makes this stream the calling thread's current stream on its device, so the kernels
    /// and copies the thread starts there run on it.
    pub fn make_current(&self) -> Result<()> {
        // SAFETY: as in `new`; `self` came from `new`, so the id names a stream of the pool.
        shim(|err, len| unsafe { ffi::coin_sorter_cuda_stream_set(self.device, self.id, err, len) })
            .map_err(|why| anyhow!("cannot make CUDA stream {} current: {why}", self.id))
    }

    /// Blocks until the work queued on this stream so far has finished.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: as in `make_current`.
        shim(|err, len| unsafe {
            ffi::coin_sorter_cuda_stream_synchronize(self.device, self.id, err, len)
        })
        .map_err(|why| anyhow!("cannot wait for CUDA stream {}: {why}", self.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a CUDA device the pool has no stream to give, and the error says why instead of
    /// a C++ exception aborting the process.
    #[test]
    fn no_stream_without_a_cuda_device() {
        if tch::Cuda::is_available() {
            return;
        }
        let err = CudaStream::new(0).unwrap_err().to_string();
        assert!(err.starts_with("cannot take a CUDA stream for device 0: "), "{err}");
        assert!(err.len() > "cannot take a CUDA stream for device 0: ".len(), "{err}");
        let err = CudaStream::new(300).unwrap_err().to_string();
        assert_eq!(err, "CUDA device index 300 is out of range (at most 127)");
    }
}
