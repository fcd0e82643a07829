// C entry points for the c10 stream calls that tch does not wrap: take a CUDA stream from
// libtorch's pool, make a stream the calling thread's current one, and wait for a stream.
// They go through c10's device-generic guard interface, which libc10_cuda.so fills in once
// libtorch_cuda.so is loaded, so neither the CUDA headers nor a link to libc10_cuda.so is
// needed, and a CPU-only process gets c10's error instead. Every entry point catches C++
// exceptions, which must not unwind into Rust, and reports the message instead.

#include <c10/core/Device.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>

namespace {

// Copies the first line of `what` (c10 errors append a backtrace) into `err`.
void report(const char* what, char* err, std::size_t len) {
  if (err == nullptr || len == 0) {
    return;
  }
  std::size_t n = std::strcspn(what, "\n");
  if (n > len - 1) {
    n = len - 1;
  }
  std::memcpy(err, what, n);
  err[n] = '\0';
}

// Runs `work` with libtorch's CUDA guard implementation: 0 when it returns, -1 with the
// exception's message in `err` when it throws (no exception leaves this function).
template <typename Work>
int guarded(char* err, std::size_t len, Work work) {
  try {
    work(*c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA));
    return 0;
  } catch (const std::exception& e) {
    report(e.what(), err, len);
  } catch (...) {
    report("unknown C++ exception", err, len);
  }
  return -1;
}

// The pool's stream `id` on CUDA device `device`.
c10::Stream cuda_stream(int device, std::int64_t id) {
  return c10::Stream::unpack3(id, static_cast<c10::DeviceIndex>(device), c10::DeviceType::CUDA);
}

}  // namespace

extern "C" int coin_sorter_cuda_stream_new(int device, std::int64_t* id, char* err,
                                           std::size_t len) {
  return guarded(err, len, [&](const c10::impl::DeviceGuardImplInterface& cuda) {
    c10::Device dev(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device));
    *id = cuda.getStreamFromGlobalPool(dev, false).id();
  });
}

extern "C" int coin_sorter_cuda_stream_set(int device, std::int64_t id, char* err,
                                           std::size_t len) {
  return guarded(err, len, [&](const c10::impl::DeviceGuardImplInterface& cuda) {
    cuda.exchangeStream(cuda_stream(device, id));
  });
}

extern "C" int coin_sorter_cuda_stream_synchronize(int device, std::int64_t id, char* err,
                                                   std::size_t len) {
  return guarded(err, len, [&](const c10::impl::DeviceGuardImplInterface& cuda) {
    cuda.synchronizeStream(cuda_stream(device, id));
  });
}
