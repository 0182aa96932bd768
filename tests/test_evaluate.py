import math

import numpy as np
import pytest

from converter.data import EvalSet
from converter.evaluate import PopularityScorer, evaluate, metrics_from_ranks, rank_targets


def test_metrics_hand_computed():
    ranks = np.array([0, 3, 15, np.inf])
    top = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    m = metrics_from_ranks(ranks, top, n_items=10, ks=(2, 10))
    assert m["HR@10"] == pytest.approx(2 / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(5)) / 4)
    assert m["HR@2"] == pytest.approx(1 / 4) and m["NDCG@2"] == pytest.approx(1 / 4)
    assert m["MRR"] == pytest.approx((1 + 1 / 4 + 1 / 16) / 4)
    assert m["coverage@2"] == pytest.approx(5 / 10)
    assert m["users"] == 4


def test_rank_excludes_seen_and_breaks_ties_by_index():
    scores = np.array([[5.0, 4.0, 4.0, 9.0, 1.0]])
    # item 3 was seen: excluded; target 2 ties with item 1 (lower index first) -> rank 2
    ranks, top = rank_targets(scores, [np.array([3])], np.array([2]), k=3)
    assert ranks.tolist() == [2] and top.tolist() == [[0, 1, 2]]
    ranks, _ = rank_targets(scores, [np.array([3])], np.array([2]), k=3, exclude_seen=False)
    assert ranks.tolist() == [3]


def test_a_seen_target_is_a_miss_when_seen_items_are_excluded_and_ranked_when_repeats_count():
    scores, hist, target = np.array([[1.0, 2.0, 3.0]]), [np.array([2, 1])], np.array([2])
    ranks, top = rank_targets(scores, hist, target, k=2)
    assert ranks.tolist() == [math.inf] and top[0, 0] == 0  # the device would never show item 2 again
    ranks, _ = rank_targets(scores, hist, target, k=2, exclude_seen=False)
    assert ranks.tolist() == [0]


def test_evaluate_follows_the_eval_sets_protocol():
    pop = PopularityScorer([np.array([2, 2, 1])], n_items=3)  # popularity order: 2, 1, 0
    repeat = EvalSet(np.array([0]), [np.array([2])], np.array([2]), exclude_seen=False)
    exclude = EvalSet(np.array([0]), [np.array([2])], np.array([2]))
    assert evaluate(pop, repeat, n_items=3, ks=(1,))["HR@1"] == 1.0
    assert evaluate(pop, exclude, n_items=3, ks=(1,))["HR@1"] == 0.0


def test_the_protocol_is_chosen_by_the_share_of_repeated_targets():
    from converter.data import REPEAT_SHARE, Dataset, Item, choose_seen_items, leave_one_out
    items = [Item(str(i), f"t{i}") for i in range(6)]
    # 10 users; in k of them the last two events repeat an earlier item
    def data(k):
        seqs = [np.array([0, 1, 2, 0, 1] if u < k else [0, 1, 2, 3, 4], np.int32) for u in range(10)]
        return Dataset("d", items, [str(u) for u in range(10)], seqs)
    assert leave_one_out(data(0)).seen_items == "exclude" and leave_one_out(data(0)).repeat_share == 0.0
    split = leave_one_out(data(5))
    assert split.repeat_share == pytest.approx(0.5) and split.seen_items == "repeat"
    assert not split.test.exclude_seen and not split.valid.exclude_seen
    assert leave_one_out(data(5), "exclude").test.exclude_seen
    assert choose_seen_items(REPEAT_SHARE - 1e-9) == "exclude" and choose_seen_items(REPEAT_SHARE) == "repeat"
    with pytest.raises(ValueError, match="seen_items"):
        choose_seen_items(0.0, "sometimes")


def test_nan_scores_are_an_error():
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(np.array([[np.nan, 1.0]]), [np.array([], int)], np.array([1]), k=1)


def test_evaluate_and_popularity_baseline():
    train = [np.array([0, 1, 1]), np.array([1, 2])]
    pop = PopularityScorer(train, n_items=4)
    es = EvalSet(np.array([0, 1]), [np.array([0]), np.array([1, 2])], np.array([1, 3]))
    m = evaluate(pop, es, n_items=4, ks=(1, 2), batch_size=1)
    # user 0: item 0 seen, item 1 most popular -> rank 0; user 1: items 1,2 seen; 0 (count 1) > 3 -> rank 1
    assert m["HR@1"] == pytest.approx(0.5) and m["HR@2"] == pytest.approx(1.0)
    assert m["MRR"] == pytest.approx((1 + 0.5) / 2)


def test_scorer_shape_is_checked():
    es = EvalSet(np.array([0]), [np.array([0])], np.array([1]))
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda h: np.zeros((1, 3)).ravel(), es, n_items=3)
