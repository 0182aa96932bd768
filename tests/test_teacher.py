"""The reference teacher learns a synthetic sequence task, saves and loads exactly, and the Teacher
interface accepts other server models."""
import numpy as np
import pytest

from converter.data import Item, build_dataset, leave_one_out
from converter.evaluate import evaluate
from converter.teacher import (
    EnsembleTeacher,
    SASRecConfig,
    SASRecTeacher,
    Teacher,
    load_teacher,
    member_configs,
    train_ensemble,
    train_sasrec,
)

N_ITEMS = 30


def cyclic_split(n_users=200, length=12, seed=0):
    """Each user walks the cycle 0 -> 1 -> ... -> 29 -> 0 from a random start: the next item is
    always the current one plus one, which a sequence model must learn from order alone."""
    rng = np.random.default_rng(seed)
    catalog = {str(i): Item(str(i), title=f"item {i}") for i in range(N_ITEMS)}
    events = []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        events += [(f"u{u}", str((start + t) % N_ITEMS), float(t)) for t in range(length)]
    data = build_dataset("cycle", events, catalog)
    return data, leave_one_out(data)


@pytest.fixture(scope="module")
def trained():
    data, split = cyclic_split()
    config = SASRecConfig(max_len=10, dim=16, blocks=1, dropout=0.0, learning_rate=5e-3, batch_size=32,
                          max_epochs=80, eval_every=10, patience=100, use_text=False)
    teacher, log = train_sasrec(split, [it.id for it in data.items], None, config, log=lambda m: None)
    return data, split, teacher, log


def test_teacher_learns_the_next_item(trained):
    data, split, teacher, log = trained
    m = evaluate(teacher, split.test, data.n_items, ks=(1, 10), exclude_seen=False)
    assert m["HR@1"] > 0.9, m  # chance is 1/30
    assert log.epochs[-1]["loss"] < log.epochs[0]["loss"]
    assert log.best_valid["NDCG@10"] > 0.9


def test_save_load_round_trip(trained, tmp_path):
    data, split, teacher, _ = trained
    teacher.info["note"] = "kept"
    teacher.save(tmp_path / "t")
    again = SASRecTeacher.load(tmp_path / "t")
    hist = split.test.histories[:7]
    np.testing.assert_allclose(again.scores(hist), teacher.scores(hist), rtol=1e-5, atol=1e-5)
    assert again.item_ids == teacher.item_ids and again.info["note"] == "kept"
    assert not list(tmp_path.glob(".t.*")), "no staging leftovers"


def test_text_fusion_and_load_errors(tmp_path):
    data, split = cyclic_split(n_users=20)
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    config = SASRecConfig(max_len=10, dim=8, blocks=1, max_epochs=1, eval_every=1, use_text=True)
    teacher, _ = train_sasrec(split, [it.id for it in data.items], text, config, log=lambda m: None)
    assert teacher.item_vectors().shape == (N_ITEMS, 8)
    teacher.save(tmp_path / "t")
    np.testing.assert_allclose(SASRecTeacher.load(tmp_path / "t").item_vectors(), teacher.item_vectors(), atol=1e-6)
    # known items keep their ID embedding plus the text; a new (cold-start) item gets its text alone
    ids = [data.items[3].id, "never-seen"]
    cold = teacher.item_vectors_from_text(ids, text[[3, 4]])
    np.testing.assert_allclose(cold[0], teacher.item_vectors()[3], atol=1e-5)
    np.testing.assert_allclose(cold[1], teacher.item_vectors()[4] - teacher.net.id_emb.embeddings.numpy()[5], atol=1e-5)
    with pytest.raises(ValueError, match="text vectors cover"):
        train_sasrec(split, [it.id for it in data.items], text[:5], config)
    with pytest.raises(FileNotFoundError, match="no saved teacher"):
        SASRecTeacher.load(tmp_path / "missing")


def test_teacher_interface_accepts_other_models():
    class LastItem(Teacher):
        """A toy server model: the user vector is the last item's one-hot."""
        n_items = 4

        def item_vectors(self):
            return np.eye(4, dtype=np.float32)

        def user_vectors(self, histories):
            return np.stack([np.roll(np.eye(4, dtype=np.float32)[h[-1]], 1) for h in histories])

    _, split = cyclic_split(n_users=5)
    t = LastItem()
    assert t([np.array([0]), np.array([3])]).argmax(1).tolist() == [1, 0]


def test_prefix_scores_share_one_pass_and_agree_with_scoring_each_prefix(trained):
    data, split, teacher, _ = trained
    seqs = split.train[:10]
    lengths = [np.array([2, 5, len(s)]) for s in seqs]
    items = teacher.item_vectors()
    shared = teacher.prefix_user_vectors(seqs, lengths) @ items.T
    each = Teacher.prefix_user_vectors(teacher, seqs, lengths) @ items.T  # the default: one prefix at a time
    assert shared.shape == each.shape == (30, N_ITEMS)
    assert (shared.argmax(1) == each.argmax(1)).mean() > 0.9
    with pytest.raises(ValueError, match="window"):
        teacher.prefix_user_vectors([np.arange(30) % N_ITEMS], [np.array([1, 30])])


def test_id_dropout_trains_items_on_their_text_alone_and_never_serves_that_way():
    from converter.teacher.sasrec import SASRecNet
    text = np.random.default_rng(0).normal(size=(6, 384)).astype(np.float32)
    net = SASRecNet(6, SASRecConfig(dim=8, max_len=4, id_dropout=1.0), text)
    text_only = net.text_proj(net.text_table).numpy()
    assert np.allclose(net.item_table(training=True).numpy(), text_only)            # every ID part dropped
    assert np.allclose(net.item_table().numpy(), text_only + net.id_emb.embeddings.numpy())  # serving: never
    half = SASRecNet(6, SASRecConfig(dim=8, max_len=4, id_dropout=0.5), text).item_table(training=True).numpy()
    assert half.shape == (7, 8)


def test_an_ensemble_scores_by_its_members_summed_scores_and_saves_as_one(trained, tmp_path):
    data, split, teacher, _ = trained
    config = SASRecConfig(max_len=10, dim=8, blocks=1, dropout=0.0, max_epochs=2, eval_every=1, use_text=False, seed=3)
    other, _ = train_sasrec(split, [it.id for it in data.items], None, config, log=lambda m: None)
    ensemble = EnsembleTeacher([teacher, other])
    hist = split.test.histories[:9]
    np.testing.assert_allclose(ensemble.scores(hist), teacher.scores(hist) + other.scores(hist), rtol=1e-4, atol=1e-4)
    assert ensemble.item_vectors().shape == (N_ITEMS, 24)
    prefixes = ensemble.prefix_user_vectors([split.train[0]], [np.array([3, 5])])
    np.testing.assert_allclose(prefixes, ensemble.user_vectors([split.train[0][:3], split.train[0][:5]]), atol=1e-4)
    ensemble.save(tmp_path / "e")
    again = load_teacher(tmp_path / "e")
    assert isinstance(again, EnsembleTeacher) and again.configs == [teacher.config, other.config]
    np.testing.assert_allclose(again.scores(hist), ensemble.scores(hist), rtol=1e-5, atol=1e-5)
    assert isinstance(load_teacher(tmp_path / "e" / "member0"), SASRecTeacher)
    assert not list(tmp_path.glob(".e.*")), "no staging leftovers"
    with pytest.raises(ValueError, match="at least 2 teachers"):
        EnsembleTeacher([teacher])
    other.item_ids = other.item_ids[::-1]
    with pytest.raises(ValueError, match="share one catalog"):
        EnsembleTeacher([teacher, other])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"format": "someone-else/2"}')
    with pytest.raises(ValueError, match="unknown teacher format 'someone-else/2'"):
        load_teacher(tmp_path / "odd")


def test_ensemble_members_come_from_a_spec_and_train_within_one_budget():
    base = SASRecConfig(max_len=10, dim=8, blocks=1, max_epochs=1, eval_every=1, use_text=False)
    a, b, c = member_configs("default, dim=16, blocks=2+dropout=0.3+use-text=false", base)
    assert a == base and (b.dim, b.blocks) == (16, 1) and (c.blocks, c.dropout, c.use_text) == (2, 0.3, False)
    with pytest.raises(ValueError, match="'width=3' is not key=value of a teacher setting"):
        member_configs("default,width=3", base)
    with pytest.raises(ValueError, match="dim must be a int, not 'wide'"):
        member_configs("default,dim=wide", base)
    with pytest.raises(ValueError, match="an ensemble needs at least 2"):
        member_configs("dim=16", base)
    data, split = cyclic_split(n_users=30)
    ensemble = train_ensemble(split, [it.id for it in data.items], None, [a, b], budget_minutes=5, log=lambda m: None)
    assert [m.config for m in ensemble.members] == [a, b] and len(ensemble.info["stopped"]) == 2
    with pytest.raises(ValueError, match="budget ran out before member 1 of 2"):
        train_ensemble(split, [it.id for it in data.items], None, [a, b], budget_minutes=0, log=lambda m: None)
