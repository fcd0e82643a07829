//! A CUDA stream of the classifier's own, through the C++ shim in `cuda_stream.cpp` (tch has
//! no stream API).
//!
//! libtorch runs every kernel on the calling thread's current stream, which is the device's
//! default stream unless set. The default (legacy) stream synchronises with every other stream
//! of the process, so a classifier sharing a process with other CUDA work would wait on it.

use anyhow::{Result, bail};

/// A stream taken from libtorch's pool for one device. Streams of the pool live as long as the
/// process, so this handle needs no clean-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaStream {
    device: i32,
    id: i64,
}

#[cfg(coin_sorter_cuda_stream)]
unsafe extern "C" {
    fn coin_sorter_cuda_stream_new(
        device: std::ffi::c_int,
        id: *mut i64,
        err: *mut std::ffi::c_char,
        len: usize,
    ) -> std::ffi::c_int;
    fn coin_sorter_cuda_stream_set(
        device: std::ffi::c_int,
        id: i64,
        err: *mut std::ffi::c_char,
        len: usize,
    ) -> std::ffi::c_int;
    fn coin_sorter_cuda_stream_synchronize(
        device: std::ffi::c_int,
        id: i64,
        err: *mut std::ffi::c_char,
        len: usize,
    ) -> std::ffi::c_int;
}

/// Room for the first line of a c10 error message.
#[cfg(coin_sorter_cuda_stream)]
const ERR_LEN: usize = 512;

/// The NUL-terminated message the shim wrote into `buf`.
#[cfg(coin_sorter_cuda_stream)]
fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl CudaStream {
    /// Takes a stream from libtorch's pool for CUDA device `device`. Fails with c10's reason
    /// when there is no such device, and on builds without the shim.
    pub fn new(device: usize) -> Result<Self> {
        // c10 keeps device indices in an i8.
        let Ok(dev) = i8::try_from(device).map(i32::from) else {
            bail!("CUDA device index {device} is out of range (at most {})", i8::MAX);
        };
        #[cfg(coin_sorter_cuda_stream)]
        {
            let mut id = 0i64;
            let mut err = [0u8; ERR_LEN];
            // SAFETY: `id` and `err` are valid for writes, `err` for `ERR_LEN` bytes; the shim
            // writes at most that many (NUL included) and catches every C++ exception.
            let rc = unsafe {
                coin_sorter_cuda_stream_new(dev, &mut id, err.as_mut_ptr().cast(), ERR_LEN)
            };
            if rc != 0 {
                bail!("cannot take a CUDA stream for device {device}: {}", message(&err));
            }
            Ok(Self { device: dev, id })
        }
        #[cfg(not(coin_sorter_cuda_stream))]
        {
            bail!(
                "cannot take a CUDA stream for device {dev}: this build has no CUDA stream \
                 support (libtorch had no c10 headers when it was built)"
            )
        }
    }

    /// Makes this stream the calling thread's current stream on its device, so the kernels
    /// and copies the thread starts there run on it.
    pub fn make_current(&self) -> Result<()> {
        #[cfg(coin_sorter_cuda_stream)]
        {
            let mut err = [0u8; ERR_LEN];
            // SAFETY: `err` is valid for `ERR_LEN` bytes of writes; the shim catches every C++
            // exception. `self` came from `new`, so the id names a stream of the pool.
            let rc = unsafe {
                coin_sorter_cuda_stream_set(self.device, self.id, err.as_mut_ptr().cast(), ERR_LEN)
            };
            if rc != 0 {
                bail!("cannot make CUDA stream {} current: {}", self.id, message(&err));
            }
            Ok(())
        }
        #[cfg(not(coin_sorter_cuda_stream))]
        {
            bail!("cannot make CUDA stream {} current: no CUDA stream support", self.id)
        }
    }

    /// Blocks until the work queued on this stream so far has finished.
    pub fn synchronize(&self) -> Result<()> {
        #[cfg(coin_sorter_cuda_stream)]
        {
            let mut err = [0u8; ERR_LEN];
            // SAFETY: as in `make_current`.
            let rc = unsafe {
                coin_sorter_cuda_stream_synchronize(
                    self.device,
                    self.id,
                    err.as_mut_ptr().cast(),
                    ERR_LEN,
                )
            };
            if rc != 0 {
                bail!("cannot wait for CUDA stream {}: {}", self.id, message(&err));
            }
            Ok(())
        }
        #[cfg(not(coin_sorter_cuda_stream))]
        {
            bail!("cannot wait for CUDA stream {}: no CUDA stream support", self.id)
        }
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
