// What fer-lab needs from libtorch that tch does not expose: the backward of a recorded region
// seeded with its output gradient (tch's run_backward only takes scalar roots, which would cost
// a multiply and a sum over every region's output), the fused Adam kernel, and a trace of the ATen operators and
// autograd nodes that run, with their input shapes (libtorch's RecordFunction, what PyTorch's
// profiler reads), so a test can show which native kernels each layer uses; and libtorch's
// autocast for bf16 mixed precision on either device type, which tch's `autocast` offers only
// on CUDA and only in float16.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

char *copy_string(const std::string &s) {
    char *out = static_cast<char *>(std::malloc(s.size() + 1));
    std::memcpy(out, s.c_str(), s.size() + 1);
    return out;
}

std::mutex trace_mutex;
std::vector<std::string> trace_lines;
std::optional<at::CallbackHandle> trace_handle;
thread_local int trace_depth = 0;

std::string shapes_of(const at::RecordFunction &fn) {
    std::ostringstream out;
    bool first = true;
    for (const c10::IValue &value : fn.inputs()) {
        if (!value.isTensor()) {
            continue;
        }
        const at::Tensor &t = value.toTensor();
        if (!first) {
            out << ' ';
        }
        first = false;
        if (!t.defined()) {
            out << "-";
            continue;
        }
        out << '[';
        for (int64_t i = 0; i < t.dim(); i++) {
            out << (i ? "," : "") << t.size(i);
        }
        out << ']';
        // Reduced precision shows in the trace, so a test sees which kernels ran in bf16.
        if (t.scalar_type() == at::kBFloat16) {
            out << "bf16";
        } else if (t.scalar_type() == at::kHalf) {
            out << "f16";
        }
    }
    return out.str();
}

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction &fn) {
    std::string line = std::to_string(trace_depth) + '\t' +
                       (fn.scope() == at::RecordScope::BACKWARD_FUNCTION ? "backward" : "op") +
                       '\t' + fn.name() + '\t' + shapes_of(fn);
    trace_depth++;
    std::lock_guard<std::mutex> lock(trace_mutex);
    trace_lines.push_back(std::move(line));
    return nullptr;
}

void on_exit(const at::RecordFunction &, at::ObserverContext *) { trace_depth--; }

}  // namespace

extern "C" {

// grads[i] = d(sum(output * grad_output)) / d inputs[i], or null where the input does not
// reach the output. Returns an error message (to free with ferlab_free) or null.
char *ferlab_region_grad(at::Tensor *output, at::Tensor *grad_output, at::Tensor **inputs,
                         int n_inputs, at::Tensor **grads) {
    try {
        std::vector<at::Tensor> wrt;
        wrt.reserve(n_inputs);
        for (int i = 0; i < n_inputs; i++) {
            wrt.push_back(*inputs[i]);
        }
        auto result = torch::autograd::grad({*output}, wrt, {*grad_output},
                                            /*retain_graph=*/false, /*create_graph=*/false,
                                            /*allow_unused=*/true);
        for (int i = 0; i < n_inputs; i++) {
            grads[i] = result[i].defined() ? new at::Tensor(result[i]) : nullptr;
        }
        return nullptr;
    } catch (const std::exception &e) {
        return copy_string(e.what());
    }
}

// Starts recording every ATen operator and autograd node of this thread (and of the autograd
// engine's threads while they work for it: they inherit its thread-local state), so ops that
// other threads run at the same time stay out of the trace.
void ferlab_trace_start() {
    std::lock_guard<std::mutex> lock(trace_mutex);
    trace_lines.clear();
    if (!trace_handle) {
        trace_handle = at::addThreadLocalCallback(
            at::RecordFunctionCallback(on_enter, on_exit)
                .needsInputs(true)
                .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
    }
}

// Stops recording and returns the lines "depth\tscope\tname\tshapes" (to free with ferlab_free).
char *ferlab_trace_stop() {
    std::lock_guard<std::mutex> lock(trace_mutex);
    if (trace_handle) {
        at::removeCallback(*trace_handle);
        trace_handle.reset();
    }
    std::string out;
    for (const std::string &line : trace_lines) {
        out += line;
        out += '\n';
    }
    trace_lines.clear();
    return copy_string(out);
}

// One Adam (or, with decoupled, AdamW) step of one parameter tensor, in place on the
// parameter and both moments: libtorch's fused kernel, one pass instead of burn's dozen
// element-wise kernels. `step` counts this step (1 for the first). Returns an error message (to
// free with ferlab_free) or null.
char *ferlab_fused_adam(at::Tensor *param, at::Tensor *grad, at::Tensor *exp_avg,
                        at::Tensor *exp_avg_sq, double step, double lr, double beta1,
                        double beta2, double weight_decay, double eps, int decoupled) {
    try {
        // The kernel reads the step count from a tensor on the parameter's device (no copy from
        // the host, so no synchronisation on a GPU).
        at::Tensor steps = at::full({}, step, param->options().dtype(at::kFloat));
        if (decoupled) {
            at::_fused_adamw_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {steps}, lr, beta1,
                              beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
        } else {
            at::_fused_adam_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {steps}, lr, beta1,
                             beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
        }
        return nullptr;
    } catch (const std::exception &e) {
        return copy_string(e.what());
    }
}

// What autocast was on this thread before a region turned it on (autocast's state is
// thread-local, as PyTorch's `torch.autocast` context is).
struct AutocastGuard {
    at::DeviceType device;
    bool enabled;
    at::ScalarType dtype;
};

// Turns on autocast to bfloat16 for this thread's operators on the CPU (`cuda` = 0) or CUDA:
// convolutions and matrix products run in bf16, what PyTorch's
// `torch.autocast(device, dtype=torch.bfloat16)` does on entering. Returns the guard to hand to
// ferlab_autocast_end.
void *ferlab_autocast_begin(int cuda) {
    at::DeviceType device = cuda ? at::kCUDA : at::kCPU;
    auto *guard = new AutocastGuard{device, at::autocast::is_autocast_enabled(device),
                                    at::autocast::get_autocast_dtype(device)};
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return guard;
}

// Restores what the guard saved; the outermost exit drops autocast's cache of cast weights, as
// PyTorch's context does.
void ferlab_autocast_end(void *handle) {
    auto *guard = static_cast<AutocastGuard *>(handle);
    if (at::autocast::decrement_nesting() == 0) {
        at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(guard->device, guard->enabled);
    at::autocast::set_autocast_dtype(guard->device, guard->dtype);
    delete guard;
}

void ferlab_free(char *s) { std::free(s); }
}
