"""The conversion's student choice: the teacher's quality and its top-10 first, then the device's costs."""
import pytest

from converter.conversion_report import StudentResult
from converter.convert import Candidate, choose


def candidate(name, ndcg, overlap, ms, blockers=()):
    result = StudentResult(architecture=name, config={}, valid_fp32={"NDCG@10": ndcg}, valid_int8={"NDCG@10": ndcg},
                           parity={}, tflite_bytes=1000, distill_minutes=1.0, distill_epochs=[], latency_ms=ms,
                           float_ops=[], edgetpu_blockers=list(blockers), valid_overlap=overlap)
    return Candidate(None, None, None, result)


def picked(candidates, teacher_ndcg=0.18, target=0.8):
    pick, why = choose(candidates, teacher_ndcg, target)
    return pick.result.architecture, why


def test_a_student_that_keeps_the_teachers_lists_wins_over_a_faster_one_with_better_ndcg():
    name, why = picked([candidate("fast", 0.186, 0.70, 0.05), candidate("close", 0.182, 0.81, 0.9)])
    assert name == "close" and "1 of 2 candidates" in why and "overlap with the teacher 0.810" in why


def test_without_a_faithful_student_one_keeping_the_teachers_lists_beats_a_faster_one_within_1_percent():
    # ML-1M, one conversion: the teacher-encoder's int8 NDCG@10 fell just under 0.99 x the teacher's
    name, why = picked([candidate("teacher-encoder", 0.1804, 0.899, 0.93), candidate("pool-recent", 0.1789, 0.728, 0.05)],
                       teacher_ndcg=0.1825)
    assert name == "teacher-encoder" and "no candidate keeps both" in why


def test_without_a_faithful_student_the_best_ndcg_then_the_cheaper_wins():
    name, why = picked([candidate("a", 0.186, 0.70, 0.5), candidate("b", 0.1855, 0.72, 0.05),
                        candidate("c", 0.170, 0.79, 0.01)])
    assert name == "b" and "no candidate keeps both" in why


@pytest.mark.parametrize("blockers, expected", [((), "slow"), (("NEG",), "fast")])
def test_among_faithful_students_edge_tpu_then_speed_decide(blockers, expected):
    fast = candidate("fast", 0.185, 0.85, 0.05, blockers=("BATCH_MATMUL",))
    slow = candidate("slow", 0.184, 0.82, 0.9, blockers=blockers)
    assert picked([fast, slow])[0] == expected


def test_ndcg_below_the_teachers_bar_is_not_faithful_however_close_the_lists():
    name, _ = picked([candidate("copy", 0.170, 0.95, 0.9), candidate("pool", 0.183, 0.70, 0.05)])
    assert name == "pool"


def search_candidate(name, known, intent, overlap, parameters, tokenizer_bytes, dim=192):
    from types import SimpleNamespace
    valid = {"known_item_success@5": {"all": known}, "intent_precision@10": {"all": intent},
             "anchor_overlap@10": {"all": overlap}}
    return {"config": SimpleNamespace(name=name), "space": SimpleNamespace(dim=dim), "valid": valid,
            "parameters": parameters, "tokenizer": b"x" * tokenizer_bytes}


def test_the_query_encoder_is_chosen_among_those_that_fit_the_device_budget():
    from converter.search.build import choose_encoder
    big = search_candidate("big", 0.96, 0.50, 0.64, 2_900_000, 200_000)      # best, but 3.1 MB with its tokenizer
    large = search_candidate("large", 0.95, 0.48, 0.60, 2_400_000, 450_000)
    small = search_candidate("small", 0.91, 0.45, 0.44, 480_000, 70_000)
    pick, why = choose_encoder([small, large, big], 3_000_000, 0.3)
    assert pick is large and "within 3,000,000 bytes" in why
    near = search_candidate("near", 0.95, 0.48, 0.59, 1_000_000, 100_000)   # within 1% of large: the smaller wins
    assert choose_encoder([large, near], 3_000_000, 0.3)[0] is near
    with pytest.raises(ValueError, match="no query encoder fits 1,000 bytes.*small 550,000"):
        choose_encoder([small], 1000, 0.3)
