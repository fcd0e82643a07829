// C entry points for a TorchScript module held through libtorch's C++ API: load it, run its
// forward pass, and make a frozen copy of it with libtorch's inference passes applied. tch
// wraps loading and running, but not freezing, and gives no access to the module it holds, so
// the classifier holds its module here instead.
//
// Tensors cross as `at::Tensor*`, the representation tch uses for its own tensors: the input
// is borrowed, the output is a new heap tensor that tch takes ownership of. Every entry point
// catches C++ exceptions, which must not unwind into Rust, and hands back the message as a
// string allocated with malloc, which the caller frees with coin_sorter_script_free_error.

#include <ATen/core/Tensor.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

// A malloc'd copy of `what`, or nullptr when there is no memory for it.
char* copy_message(const char* what) {
  std::size_t n = std::strlen(what);
  char* copy = static_cast<char*>(std::malloc(n + 1));
  if (copy != nullptr) {
    std::memcpy(copy, what, n + 1);
  }
  return copy;
}

// Runs `work`; when it throws, stores the exception's message in `*err` and returns nullptr.
// No exception leaves this function.
template <typename Work>
void* guarded(char** err, Work work) {
  *err = nullptr;
  try {
    return work();
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  if (*err == nullptr) {
    // No memory even for the message: a fixed one the caller must not free is worse than a
    // short one it can.
    *err = copy_message("out of memory");
  }
  return nullptr;
}

// tch's device numbering: -1 for the CPU, the CUDA device's index otherwise.
c10::Device device_of(int device) {
  if (device < 0) {
    return c10::Device(c10::DeviceType::CPU);
  }
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device));
}

}  // namespace

// Loads the TorchScript file `path` onto `device`, in eval mode.
extern "C" void* coin_sorter_script_load(const char* path, int device, char** err) {
  return guarded(err, [&]() -> void* {
    auto module = std::make_unique<torch::jit::Module>(torch::jit::load(path, device_of(device)));
    module->eval();
    return module.release();
  });
}

// A frozen copy of `module` (parameters and attributes folded into the graph as constants,
// batch norms folded into the convolutions before them); with `inference` non-zero, also with
// libtorch's inference passes applied (on the CPU: oneDNN convolutions with packed weights,
// fused activations). `module` itself is left as it was.
extern "C" void* coin_sorter_script_optimized(const void* module, int inference, char** err) {
  return guarded(err, [&]() -> void* {
    const auto& plain = *static_cast<const torch::jit::Module*>(module);
    auto frozen = std::make_unique<torch::jit::Module>(torch::jit::freeze(plain));
    if (inference != 0) {
      *frozen = torch::jit::optimize_for_inference(*frozen);
    }
    return frozen.release();
  });
}

// Runs `module`'s forward method on the one tensor `input`; its output must be a tensor.
extern "C" void* coin_sorter_script_forward(void* module, const void* input, char** err) {
  return guarded(err, [&]() -> void* {
    auto& m = *static_cast<torch::jit::Module*>(module);
    std::vector<c10::IValue> inputs{*static_cast<const at::Tensor*>(input)};
    c10::IValue out = m.forward(std::move(inputs));
    if (!out.isTensor()) {
      throw std::invalid_argument(std::string("forward returned a ") + out.tagKind() +
                                  ", not a tensor");
    }
    at::Tensor scores = std::move(out).toTensor();
    // tch knows only the CPU and CUDA among the devices a tensor can be on (the meta device,
    // for one, holds no values), so no other may reach it.
    if (!scores.device().is_cpu() && !scores.device().is_cuda()) {
      throw std::invalid_argument("forward returned a tensor on the " + scores.device().str() +
                                  " device, which holds no values the classifier can read");
    }
    return new at::Tensor(std::move(scores));
  });
}

// Frees a module that coin_sorter_script_load or coin_sorter_script_optimized returned.
extern "C" void coin_sorter_script_free(void* module) {
  delete static_cast<torch::jit::Module*>(module);
}

// Frees an error message an entry point stored.
extern "C" void coin_sorter_script_free_error(char* err) { std::free(err); }
