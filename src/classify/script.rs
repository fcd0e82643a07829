//! The classifier's TorchScript module, held through the C++ shim in `script.cpp` rather than
//! tch's `CModule`, because tch cannot freeze a module or apply libtorch's inference passes,
//! and those halve the forward pass's cost on the CPU (docs/performance.md).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::ptr::NonNull;

use tch::{Device, TchError, Tensor};

/// The shim's entry points. Each returns null and stores a message the caller frees with
/// `coin_sorter_script_free_error` when it fails; none lets a C++ exception through.
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    unsafe extern "C" {
        pub fn coin_sorter_script_load(
            path: *const c_char,
            device: c_int,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        pub fn coin_sorter_script_optimized(
            module: *const c_void,
            inference: c_int,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        pub fn coin_sorter_script_forward(
            module: *mut c_void,
            input: *const c_void,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        pub fn coin_sorter_script_free(module: *mut c_void);
        pub fn coin_sorter_script_free_error(err: *mut c_char);
    }
}

/// A loaded TorchScript module. Invariant: `ptr` is a module the shim made and nothing else
/// frees. Like tch's `CModule` it may move between threads but not be shared by them.
pub struct ScriptModule {
    ptr: NonNull<c_void>,
}

// SAFETY: the module is a heap object of libtorch's that no other handle refers to (each
// constructor returns a new one); libtorch lets any one thread at a time use it.
unsafe impl Send for ScriptModule {}

/// Calls one shim entry point with an error slot; the object it made, or libtorch's message
/// as a tch error, so the classifier's error handling reads it as it reads tch's.
fn call(entry: impl FnOnce(*mut *mut c_char) -> *mut c_void) -> Result<NonNull<c_void>, TchError> {
    let mut err: *mut c_char = std::ptr::null_mut();
    let out = entry(&mut err);
    if !err.is_null() {
        // SAFETY: the shim stored a NUL-terminated string it allocated, freed only here.
        let text = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
        // SAFETY: as above; `err` is not read again.
        unsafe { ffi::coin_sorter_script_free_error(err) };
        return Err(TchError::Torch(text));
    }
    NonNull::new(out).ok_or_else(|| TchError::Torch("the shim returned nothing".into()))
}

impl ScriptModule {
    /// Loads the TorchScript file `path` onto `device`, in eval mode.
    pub fn load(path: &Path, device: Device) -> Result<Self, TchError> {
        let path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| TchError::Torch(format!("{} has a NUL byte", path.display())))?;
        let device = match device {
            Device::Cuda(i) => c_int::try_from(i)
                .map_err(|_| TchError::Torch(format!("CUDA device index {i} is out of range")))?,
            _ => -1,
        };
        // SAFETY: `path` is NUL-terminated and outlives the call; `err` is a valid slot.
        let ptr = call(|err| unsafe { ffi::coin_sorter_script_load(path.as_ptr(), device, err) })?;
        Ok(Self { ptr })
    }

    /// A frozen copy of this module (weights become constants of the graph, batch norms fold
    /// into the convolutions before them), with libtorch's inference passes applied too when
    /// `inference` (`torch.jit.optimize_for_inference`). This module is left as it was.
    pub fn optimized(&self, inference: bool) -> Result<Self, TchError> {
        let inference = c_int::from(inference);
        // SAFETY: `self.ptr` is a live module (invariant), only read by the shim here.
        let ptr = call(|err| unsafe {
            ffi::coin_sorter_script_optimized(self.ptr.as_ptr(), inference, err)
        })?;
        Ok(Self { ptr })
    }

    /// Runs the module's forward method on `input`; its output must be one tensor.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, TchError> {
        // SAFETY: `self.ptr` is a live module used by this thread alone (it is not `Sync`);
        // the input is a live tch tensor, borrowed for the call.
        let out = call(|err| unsafe {
            ffi::coin_sorter_script_forward(self.ptr.as_ptr(), input.as_ptr().cast(), err)
        })?;
        // SAFETY: the shim returned a new heap `at::Tensor`, which is what a tch tensor holds;
        // ownership passes to the returned tensor, which frees it.
        Ok(unsafe { Tensor::from_ptr(out.as_ptr().cast()) })
    }
}

impl Drop for ScriptModule {
    fn drop(&mut self) {
        // SAFETY: `self.ptr` came from the shim and is freed here only (invariant).
        unsafe { ffi::coin_sorter_script_free(self.ptr.as_ptr()) }
    }
}
