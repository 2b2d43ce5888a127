// What fer-lab needs from libtorch that tch does not expose: the backward of a recorded region
// seeded with its output gradient (tch's run_backward only takes scalar roots, which would cost
// a multiply and a sum over every region's output), and a trace of the ATen operators and
// autograd nodes that run, with their input shapes (libtorch's RecordFunction, what PyTorch's
// profiler reads), so a test can show which native kernels each layer uses.
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

// Starts recording every ATen operator and autograd node, on every thread.
void ferlab_trace_start() {
    std::lock_guard<std::mutex> lock(trace_mutex);
    trace_lines.clear();
    if (!trace_handle) {
        trace_handle = at::addGlobalCallback(
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

void ferlab_free(char *s) { std::free(s); }
}
