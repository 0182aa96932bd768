"""`convert` end to end on a slice of real MovieLens-1M: students, int8 TFLite, index, signed bundle,
and the runtime verifying and reproducing it."""
import hashlib
import json
import os
import shutil
import time
from unittest import mock

import pytest

from edge_rec.bundle import Bundle
from edge_rec.errors import IntegrityError, SignatureError
from edge_rec.manifest import MANIFEST_NAME
from edge_rec.recommender import EdgeRecommender
from edge_rec.signing import generate_keypair


def copy_bundle(converted, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(converted["root"] / "bundle", dst)
    return dst


def test_report_covers_every_stage(converted):
    r = converted["report"]
    assert set(r.test.models()) == {"popularity", "teacher", "student_fp32", "bundle"}
    assert all(0.0 < q.metrics["NDCG@10"] < 1.0 for q in r.test.models().values())
    assert r.test.teacher.overlap_with_teacher is None and 0.0 < r.test.bundle.overlap_with_teacher <= 1.0
    assert {s.architecture for s in r.students} == {"pool-mlp", "pool-recent", "attention", "teacher-encoder"}
    assert r.sizes.tflite_bytes < 500_000
    assert r.index.recall >= 0.95
    assert r.golden.passed and r.golden.cases == 8 + r.golden.search_cases
    assert r.golden.search_cases == 6
    for s in r.students:
        assert s.parity["cosine_mean"] > 0.98 and 0.0 < s.valid_overlap <= 1.0
    teacher_encoder = next(s for s in r.students if s.architecture == "teacher-encoder")
    assert teacher_encoder.config["epochs"] == 4  # the given epochs win over its schedule; its learning rate is its own
    assert teacher_encoder.config["learning_rate"] == 5e-4 and r.students[0].config["learning_rate"] == 2e-3
    assert "top-10 overlap with the teacher" in r.chosen


def test_report_json_reads_back_typed_and_old_reports_are_refused(converted, tmp_path):
    from converter.conversion_report import ConversionReport, ReportError
    from converter.report import write_report

    r = converted["report"]
    md = write_report(r, tmp_path / "report")
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    back = ConversionReport.from_json(data)
    assert back == r and back.index.curves == r.index.curves  # int keys (M, ef) restored
    assert data["ndcg_ratio"] == pytest.approx(r.ndcg_ratio) and data["golden_passed"] is True
    assert "student int8 + HNSW (bundle)" in md.read_text() and (tmp_path / "report" / "quality_latency.png").is_file()
    old = {"test": {"student int8 + HNSW (bundle)": {"NDCG@10": 0.1}}}
    with pytest.raises(ReportError, match="edge-rec-conversion-report/2.*edge-rec convert"):
        ConversionReport.from_json(old)


def test_op_report_on_real_converter_output(converted):
    students = {s.architecture: s for s in converted["report"].students}
    assert students["pool-mlp"].float_ops == [] and students["pool-mlp"].edgetpu_blockers == []
    blockers = students["attention"].edgetpu_blockers
    assert blockers, "the attention student uses BATCH_MATMUL, which the Edge TPU does not map"
    assert any("BATCH_MATMUL" in b for b in blockers)
    for op in students["attention"].float_ops:
        assert f"float op {op}" in blockers


def test_bundle_verifies_and_reproduces_golden_cases(converted):
    rec = EdgeRecommender.open(converted["root"] / "bundle", converted["pub"])
    g = rec.check_golden()
    assert g.passed and g.top_identical == g.cases == 8 + 6 and g.search_cases == 6 and g.min_cosine >= 0.999
    top = rec.recommend(history=[converted["data"].items[0].id], k=5)
    assert len(top) == 5 and all(t.item_id != converted["data"].items[0].id for t in top)
    assert "title" in top[0].metadata
    assert [t.item_id for t in rec.recommend(history=[], k=3)] == [rec.items.ids[r] for r in rec.items.popularity[:3]]


def test_tampered_files_are_detected(converted, tmp_path):
    b = copy_bundle(converted, tmp_path)
    manifest = json.loads((b / MANIFEST_NAME).read_text())
    model = b / manifest["model"]["file"]
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="student.tflite: sha256"):
        Bundle.open(b, converted["pub"])
    index = b / manifest["index"]["file"]
    index.write_bytes(index.read_bytes()[:-100])
    with pytest.raises(IntegrityError):
        Bundle.open(b, converted["pub"])


def test_files_are_hashed_once_unless_they_change_after_open(converted, tmp_path):
    b = copy_bundle(converted, tmp_path)
    bundle = Bundle.open(b, converted["pub"])
    name = bundle.manifest.model.file
    calls = []
    real = hashlib.sha256
    with mock.patch("edge_rec.bundle.hashlib.sha256", lambda *a: calls.append(a) or real(*a)):
        assert bundle.read_bytes(name) == (b / name).read_bytes()
        assert bundle.verify_file(name) == b / name
    assert calls == []  # unchanged since Bundle.open hashed it
    file, st = b / name, (b / name).stat()
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    time.sleep(0.01)
    file.write_bytes(bytes(data))  # same size, altered in place ...
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and its mtime put back: the ctime still moved
    with pytest.raises(IntegrityError, match="changed after the bundle was verified"):
        bundle.read_bytes(name)
    with pytest.raises(IntegrityError, match="sha256"):
        bundle.verify_file(name)


def test_tampered_manifest_and_wrong_key_are_rejected(converted, tmp_path):
    b = copy_bundle(converted, tmp_path)
    d = json.loads((b / MANIFEST_NAME).read_text())
    d["index"]["ef_search"] += 1
    (b / MANIFEST_NAME).write_text(json.dumps(d))
    with pytest.raises(SignatureError, match="altered"):
        Bundle.open(b, converted["pub"])
    _, other = generate_keypair(tmp_path / "other")
    with pytest.raises(SignatureError, match="0 valid signature"):
        Bundle.open(converted["root"] / "bundle", other)


def test_bundle_version_moves_forward(converted, tmp_path):
    from converter.bundle import next_version

    assert next_version(converted["root"] / "bundle") == converted["report"].bundle_version + 1
    assert next_version(tmp_path / "none") == 1
    lat = converted["report"].latency
    assert lat.device_ms > 0 and lat.teacher_ms > 0 and lat.speedup == pytest.approx(lat.teacher_ms / lat.device_ms)


def test_pool_recent_is_full_integer_and_edgetpu_mappable(converted):
    s = {s.architecture: s for s in converted["report"].students}["pool-recent"]
    assert s.float_ops == [] and s.edgetpu_blockers == [], s.edgetpu_blockers


def test_a_model_with_float_ops_is_not_edgetpu_compatible_and_the_op_is_named():
    """A float (not full-integer) TFLite model, as a converter without int8 would write it."""
    from converter.tf_env import keras, tf
    from edge_rec.model import op_report
    inputs = keras.Input((4,), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    fn = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec((1, 4), tf.float32))
    tflite = tf.lite.TFLiteConverter.from_concrete_functions([fn]).convert()
    report = op_report(tflite)
    assert "FULLY_CONNECTED" in report.float_ops
    assert "float op FULLY_CONNECTED" in report.edgetpu_blockers


def test_a_teacher_encoder_reading_the_teachers_whole_window_is_kept_as_copied(converted):
    from converter.distill import StudentScorer, distill
    from converter.evaluate import evaluate_with_lists, topk_overlap
    from converter.student import StudentConfig
    split, teacher = converted["split"], converted["teacher"]
    table = teacher.item_vectors()
    config = StudentConfig(architecture="teacher-encoder", history_len=teacher.config.max_len)
    student, log = distill(teacher, split, table, config, log=lambda m: None)
    assert log.epochs == [] and 0.0 < log.best_valid["NDCG@10"] < 1.0
    n = table.shape[0]
    overlap = topk_overlap(evaluate_with_lists(StudentScorer(student, table, config.history_len), split.valid, n, ks=(10,))[1],
                           evaluate_with_lists(teacher, split.valid, n, ks=(10,))[1])
    assert overlap > 0.9  # the teacher's own lists (short histories sit at other positions: not all of them)
