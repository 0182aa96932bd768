"""Full-integer int8 post-training quantization of the student, with an op report and a parity check.

The representative data set is real histories turned into the student's inputs. Inputs and output
are int8 (Edge TPU style); the device quantizes/dequantizes with the scales recorded in the manifest.
Parity compares the int8 TFLite model, run by the runtime's own ``StudentModel``, with the fp32
student: cosine of the query vectors and top-10 overlap over the item table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from edge_rec.manifest import ModelSpec, TensorSpec
from edge_rec.model import OpReport, StudentModel

from .distill import StudentScorer, history_inputs
from .errors import ConverterError
from .evaluate import exclude_seen_topk, topk_overlap
from .student import StudentConfig, input_shapes, uses_mask
from .tf_env import keras, tf


class ParityError(ConverterError):
    """The int8 model drifted too far from the fp32 student; the conversion is refused."""


@dataclass
class Int8Model:
    """A converted student: the .tflite bytes, its manifest spec and what the checks measured."""

    tflite: bytes
    spec: ModelSpec
    report: OpReport
    parity: Dict[str, float] = field(default_factory=dict)


def to_tflite_int8(student: Callable[..., Any], representative: Sequence[Sequence[np.ndarray]]) -> bytes:
    """Convert ``student`` (a Keras model or a function of tensors taking ``training``) with
    TFLITE_BUILTINS_INT8 only; every sample is a tuple of (1, ...) float inputs."""
    shapes = [tuple(a.shape) for a in representative[0]]
    specs = [tf.TensorSpec(s, tf.float32) for s in shapes]

    @tf.function(input_signature=specs)
    def serve(*inputs):
        return student(*inputs, training=False)

    # Trap (stack-facts): passing the model as trackable object here yields all-NaN outputs.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.asarray(a, np.float32) for a in s] for s in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def representative_inputs(histories: Sequence[np.ndarray], table: np.ndarray, config: StudentConfig) -> List[List[np.ndarray]]:
    x, m = history_inputs(histories, table, config.history_len)
    return [[x[i:i + 1], m[i:i + 1]] if uses_mask(config.architecture) else [x[i:i + 1]] for i in range(len(x))]


def model_spec(tflite: bytes, config: StudentConfig, dim: int, file: str = "student.tflite") -> ModelSpec:
    """Read the converted model's tensors back into a manifest ``ModelSpec``."""
    from edge_rec.model import load_backend
    _, interpreter_class = load_backend()
    interp = interpreter_class(model_content=tflite)

    def tensor(d) -> TensorSpec:
        scale, zero = d["quantization"][:2]
        return TensorSpec(d["name"], [int(x) for x in d["shape"]], np.dtype(d["dtype"]).name, float(scale), int(zero))

    inputs = sorted(interp.get_input_details(), key=lambda d: -len(d["shape"]))  # history (3-d) before mask (2-d)
    spec = ModelSpec(file=file, architecture=config.architecture, history_len=config.history_len, dim=dim,
                     inputs=[tensor(d) for d in inputs], output=tensor(interp.get_output_details()[0]),
                     ops=[], float_ops=[], edgetpu_compatible=False)
    expected = [list(s) for s in input_shapes(config, dim)]
    if [t.shape for t in spec.inputs] != expected:
        raise ParityError(f"converted model inputs {[t.shape for t in spec.inputs]}, expected {expected}")
    return spec


def quantize_student(student: keras.Model, config: StudentConfig, table: np.ndarray,
                     representative_histories: Sequence[np.ndarray], parity_histories: Sequence[np.ndarray],
                     min_cosine: float = 0.98, min_overlap: float = 0.7) -> Int8Model:
    """Convert, describe and parity-check the student; raise ParityError below the thresholds."""
    dim = table.shape[1]
    tflite = to_tflite_int8(student, representative_inputs(representative_histories, table, config))
    spec = model_spec(tflite, config, dim)
    runner = StudentModel(tflite, spec)
    report = runner.op_report()
    spec.ops, spec.float_ops = sorted(set(report.ops)), sorted(set(report.float_ops))
    spec.edgetpu_compatible = not report.edgetpu_blockers
    parity = check_parity(runner, StudentScorer(student, table, config.history_len), table, parity_histories)
    parity_gate(parity, min_cosine, min_overlap, "int8 model")
    return Int8Model(tflite, spec, report, parity)


def parity_gate(parity: Dict[str, float], min_cosine: float, min_overlap: float, what: str) -> None:
    """Refuse a conversion whose int8 outputs drifted from fp32 (mean cosine, top-10 overlap)."""
    if parity["cosine_mean"] < min_cosine or parity["top10_overlap"] < min_overlap:
        raise ParityError(f"{what} out of parity with fp32: mean cosine {parity['cosine_mean']:.4f} "
                          f"(need >= {min_cosine}), top-10 overlap {parity['top10_overlap']:.3f} (need >= {min_overlap}). "
                          "Try more representative inputs or another architecture.")


def parity(q8: np.ndarray, q32: np.ndarray, table: np.ndarray, seen: Sequence[np.ndarray] = ()) -> Dict[str, float]:
    """Cosine between int8 and fp32 query vectors and the overlap of their top-10 over ``table``
    (``seen`` rows per query excluded, as the device excludes a user's history)."""
    cos = (q8 * q32).sum(1) / (np.linalg.norm(q8, axis=1) * np.linalg.norm(q32, axis=1) + 1e-12)
    exclude = list(seen) or [np.zeros(0, np.int64)] * len(q8)
    overlap = topk_overlap(exclude_seen_topk(q8 @ table.T, exclude, 10), exclude_seen_topk(q32 @ table.T, exclude, 10))
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "top10_overlap": overlap, "cases": len(q8)}


def check_parity(runner: StudentModel, fp32: StudentScorer, table: np.ndarray,
                 histories: Sequence[np.ndarray]) -> Dict[str, float]:
    """Parity of the int8 student with the fp32 one on real histories."""
    return parity(np.stack([runner.query(table[h]) for h in histories]), fp32.queries(histories), table, histories)
