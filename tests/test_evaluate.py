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


def test_seen_target_stays_rankable():
    ranks, _ = rank_targets(np.array([[1.0, 2.0, 3.0]]), [np.array([2, 1])], np.array([2]), k=2)
    assert ranks.tolist() == [0]


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
