"""The student model on the device: a TFLite interpreter fed the history's item vectors.

Backends, in order of preference: ``ai_edge_litert`` (LiteRT), ``tflite_runtime``, and only as a
workstation fallback ``tensorflow.lite``. The model is loaded from verified bytes (``model_content``,
which runs the flatbuffer verifier; ``model_path`` would not).
"""
from __future__ import annotations

import ctypes
import importlib
import threading
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .errors import IncompatibleBundleError, ModelError
from .manifest import ModelSpec, TensorSpec
from .quant import dequantize_tensor, quantize_tensor

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")

# Operations the Edge TPU compiler maps (coral.ai, "TensorFlow models on the Edge TPU").
EDGETPU_OPS = frozenset("""ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D EXPAND_DIMS FULLY_CONNECTED
L2_NORMALIZATION LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU QUANTIZE REDUCE_MAX REDUCE_MIN
RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SLICE SOFTMAX SPACE_TO_DEPTH SPLIT
SQUEEZE STRIDED_SLICE SUB SUM SQUARED_DIFFERENCE TANH TRANSPOSE TRANSPOSE_CONV""".split())


def load_backend(preferred: Optional[str] = None) -> Tuple[str, Any]:
    """(backend name, Interpreter class) of the first importable backend (or of ``preferred``)."""
    order = (preferred,) if preferred else BACKENDS
    errors = []
    for name in order:
        try:
            if name == "tensorflow":  # workstation fallback only; the device never has TensorFlow
                return name, importlib.import_module("tensorflow").lite.Interpreter
            return name, importlib.import_module(f"{name}.interpreter").Interpreter
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise ModelError("no TFLite interpreter found; install ai-edge-litert (Python 3.11-3.13 on x86_64/aarch64) "
                     "or tflite-runtime (with numpy<2). Tried: " + "; ".join(errors))


@dataclass
class OpReport:
    """The operators of a TFLite model and which of them compute in float."""

    ops: List[str]
    float_ops: List[str]
    static_shapes: bool

    @property
    def edgetpu_blockers(self) -> List[str]:
        """Reasons the model cannot run fully on an Edge TPU (empty if it can)."""
        out = [f"float op {op}" for op in self.float_ops]
        out += [f"op {op} is not supported by the Edge TPU" for op in sorted(set(self.ops) - EDGETPU_OPS)]
        return out + ([] if self.static_shapes else ["dynamic tensor shapes"])


def history_window(vectors: np.ndarray, history_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """The model's view of a history: the last ``history_len`` item vectors right-aligned (most recent
    in the last row) after zero rows, and the matching 0/1 mask."""
    vectors = np.asarray(vectors, dtype=np.float32)[-history_len:]
    x = np.zeros((history_len, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32)
    mask = np.zeros(history_len, np.float32)
    if len(vectors):
        x[history_len - len(vectors):] = vectors
        mask[history_len - len(vectors):] = 1.0
    return x, mask


EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


def load_edgetpu_delegate(backend: str) -> Tuple[Optional[Any], str]:
    """(delegate, message): the Edge TPU delegate if ``libedgetpu`` loads, else None and why not."""
    import platform
    library = EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    try:
        ctypes.CDLL(library)  # probe first: a failed load_delegate leaves a half-built object behind
    except OSError as e:
        return None, f"no Edge TPU: {library} not found ({e})"
    try:
        if backend == "tensorflow":
            load = importlib.import_module("tensorflow").lite.experimental.load_delegate
        else:
            load = importlib.import_module(f"{backend}.interpreter").load_delegate
        return load(library), f"Edge TPU delegate loaded ({library})"
    except (ImportError, AttributeError, ValueError, OSError, RuntimeError) as e:
        return None, f"no Edge TPU: {library} could not be loaded ({str(e).splitlines()[0] if str(e) else type(e).__name__})"


class TFLiteModel:
    """A verified TFLite model whose tensors match a manifest spec: float arrays in, float vector out
    (int8 quantization on both sides as the manifest records it). Safe to share between threads."""

    def __init__(self, model_bytes: bytes, file: str, inputs: Sequence[TensorSpec], output: TensorSpec,
                 num_threads: int = 1, backend: Optional[str] = None, edgetpu_bytes: Optional[bytes] = None) -> None:
        self.input_specs, self.output_spec = list(inputs), output
        self._model_bytes = bytes(model_bytes)
        self.backend, interpreter_class = load_backend(backend)
        self.accelerator, self.accelerator_note = "cpu", "the bundle has no Edge TPU model: running on the CPU"
        delegate = None
        if edgetpu_bytes is not None:
            delegate, self.accelerator_note = load_edgetpu_delegate(self.backend)
            if delegate is None:
                self.accelerator_note += ": running the CPU model"
        try:
            if delegate is not None:
                self._interp = interpreter_class(model_content=bytes(edgetpu_bytes), experimental_delegates=[delegate])
                self.accelerator = "edgetpu"
            else:  # TFLite's reference int8 kernels, not XNNPACK: see reference_interpreter
                self._interp = reference_interpreter(self.backend, self._model_bytes, num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"the TFLite model {file} cannot be loaded: {e}") from None
        self._inputs = self._interp.get_input_details()
        self._output = self._interp.get_output_details()[0]
        self._check(self._inputs, self.input_specs, "input")
        self._check([self._output], [output], "output")
        self._lock = threading.Lock()

    @staticmethod
    def _check(details: Sequence[dict], specs: Sequence[TensorSpec], what: str) -> None:
        if len(details) != len(specs):
            raise IncompatibleBundleError(f"the model has {len(details)} {what}(s), the manifest says {len(specs)}")
        for d, s in zip(details, specs):
            scale, zero = (d.get("quantization") or (0.0, 0))[:2]
            if list(d["shape"]) != list(s.shape) or np.dtype(d["dtype"]).name != s.dtype:
                raise IncompatibleBundleError(f"model {what} {d['name']}: shape {list(d['shape'])} {np.dtype(d['dtype']).name}, "
                                              f"manifest says {s.shape} {s.dtype}")
            if s.dtype != "float32" and (abs(scale - s.scale) > 1e-6 * s.scale or zero != s.zero_point):
                raise IncompatibleBundleError(f"model {what} {d['name']}: quantization ({scale}, {zero}) differs from "
                                              f"the manifest ({s.scale}, {s.zero_point})")

    def _feed(self, detail: dict, spec: TensorSpec, value: np.ndarray) -> None:
        value = value.reshape(spec.shape)
        if spec.dtype != "float32":
            value = quantize_tensor(value, spec.scale, spec.zero_point, spec.dtype)
        self._interp.set_tensor(detail["index"], value)

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """The output as a flat float32 vector for one set of float inputs (in the manifest's order)."""
        with self._lock:
            for detail, spec, value in zip(self._inputs, self.input_specs, inputs):
                self._feed(detail, spec, np.asarray(value, np.float32))
            self._interp.invoke()
            out = self._interp.get_tensor(self._output["index"]).reshape(-1)
        o = self.output_spec
        return out.astype(np.float32) if o.dtype == "float32" else dequantize_tensor(out, o.scale, o.zero_point)

    def op_report(self) -> "OpReport":
        return op_report(self._model_bytes, self.backend)


class StudentModel(TFLiteModel):
    """The int8 student: history item vectors in, query vector out (both float, as on the manifest)."""

    def __init__(self, model_bytes: bytes, spec: ModelSpec, num_threads: int = 1,
                 backend: Optional[str] = None, edgetpu_bytes: Optional[bytes] = None) -> None:
        self.spec = spec
        super().__init__(model_bytes, spec.file, spec.inputs, spec.output, num_threads, backend, edgetpu_bytes)

    def query(self, history_vectors: np.ndarray) -> np.ndarray:
        """(dim,) float32 query vector for a history given as its (n, dim) item vectors, oldest first."""
        x, mask = history_window(history_vectors, self.spec.history_len)
        if x.shape[1] != self.spec.dim:
            raise ValueError(f"history vectors have dimension {x.shape[1]}, the model reads {self.spec.dim}")
        return self.run(x, mask) if len(self.input_specs) > 1 else self.run(x)


def op_report(model_bytes: bytes, backend: Optional[str] = None) -> OpReport:
    """A TFLite model's operators, the ones with float inputs or outputs, and whether shapes are static.

    Read from its own reference interpreter, so the op list never depends on a serving one's delegates."""
    backend = backend or load_backend()[0]
    interp = reference_interpreter(backend, model_bytes)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    ops, float_ops = [], []
    for op in interp._get_ops_details():  # no public API lists operators
        ops.append(op["op_name"])
        tensors = [int(i) for i in list(op["inputs"]) + list(op["outputs"]) if int(i) >= 0]
        if any(dtypes.get(i) == np.float32 for i in tensors):
            float_ops.append(op["op_name"])
    static = all(-1 not in list(t.get("shape_signature", t["shape"])) for t in interp.get_tensor_details())
    return OpReport(ops=ops, float_ops=float_ops, static_shapes=static)


def reference_interpreter(backend: str, model_bytes: bytes, num_threads: int = 1):
    """An interpreter on TFLite's built-in kernels, without the default XNNPACK delegate.

    Measured here: XNNPACK's int8 kernels round differently from the built-in ones (outputs up to 2
    quantization steps apart, enough to reorder near-tied items). The built-in kernels come closer across
    machines: bit-identical on x86_64 and aarch64 for the pooling students, with ai-edge-litert and
    tflite-runtime 2.14 alike, one step apart in about 1 of 3,000 outputs of the teacher-encoder's
    convolution and fully connected layers (edge_rec.golden says what a device is then held to; the
    reference kernels, BUILTIN_REF, are 5x slower and far from these). The cost
    is ~15 us per query on a tiny student. (XNNPACK also hides the real op list, which op_report needs.)
    """
    if backend == "tensorflow":
        lite = importlib.import_module("tensorflow").lite
        cls, resolver = lite.Interpreter, lite.experimental.OpResolverType
    else:
        module = importlib.import_module(f"{backend}.interpreter")
        cls, resolver = module.Interpreter, module.OpResolverType
    return cls(model_content=model_bytes, num_threads=num_threads,
               experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
