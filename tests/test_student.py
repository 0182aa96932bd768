"""Student architectures: the teacher-encoder student starts exactly at its teacher."""
import numpy as np
import pytest

from converter.distill import history_inputs
from converter.student import StudentConfig, build_student
from converter.teacher import EnsembleTeacher, SASRecConfig, SASRecNet, SASRecTeacher, Teacher


def small_teacher(heads: int, max_len: int = 12, dim: int = 16, blocks: int = 2) -> SASRecTeacher:
    net = SASRecNet(40, SASRecConfig(dim=dim, blocks=blocks, heads=heads, max_len=max_len, use_text=False, seed=0))
    return SASRecTeacher(net, [str(i) for i in range(40)])


@pytest.mark.parametrize("heads", [1, 2])
def test_teacher_encoder_student_reproduces_a_teacher_reading_its_window(heads):
    teacher = small_teacher(heads, max_len=8)
    table = teacher.item_vectors()
    student = build_student(StudentConfig(architecture="teacher-encoder", history_len=8), table.shape[1], teacher)
    rng = np.random.default_rng(0)
    histories = [rng.integers(0, 40, n) for n in (1, 3, 7, 8, 9, 15)]  # short ones at the teacher's positions too
    want = teacher.user_vectors(histories)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    x, m = history_inputs(histories, table, 8)
    student.MASK_PENALTY = 1e4  # the teacher's masking, exactly
    for training in (False, True):  # MUL + SUM attention (converted) and matmul attention (distillation)
        got = student(x, m, training=training).numpy()
        np.testing.assert_allclose(got, want, atol=2e-5)
    student.MASK_PENALTY = type(student).MASK_PENALTY  # the int8-friendly penalty: the same direction, nearly
    assert np.min(np.sum(student(x, m).numpy() * want, axis=1)) > 0.99


def test_teacher_encoder_student_of_an_ensemble_reproduces_its_summed_scores():
    """Each member's encoder reads its own columns of the item vectors; the user vector is theirs concatenated."""
    ensemble = EnsembleTeacher([small_teacher(1, max_len=8), small_teacher(2, max_len=8, dim=8, blocks=1)])
    table = ensemble.item_vectors()
    assert table.shape == (40, 24)
    student = build_student(StudentConfig(architecture="teacher-encoder", history_len=8), 24, ensemble)
    histories = [np.random.default_rng(1).integers(0, 40, n) for n in (1, 4, 8, 12)]
    want = ensemble.user_vectors(histories)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    x, m = history_inputs(histories, table, 8)
    student.MASK_PENALTY = 1e4
    np.testing.assert_allclose(student(x, m).numpy(), want, atol=2e-5)
    with pytest.raises(ValueError, match="make 24-d user vectors, its item vectors are 16-d"):
        build_student(StudentConfig(architecture="teacher-encoder", history_len=8), 16, ensemble)


def test_teacher_encoder_student_needs_a_sasrec_teacher_and_a_window_it_can_read():
    class Plain(Teacher):
        n_items = 3

        def item_vectors(self):
            return np.eye(3, dtype=np.float32)

        def user_vectors(self, histories):
            return np.ones((len(histories), 3), np.float32)
    with pytest.raises(ValueError, match="copies a SASRec teacher"):
        build_student(StudentConfig(architecture="teacher-encoder", history_len=4), 3, Plain())
    with pytest.raises(ValueError, match="reads 20 items, the teacher at most 12"):
        build_student(StudentConfig(architecture="teacher-encoder", history_len=20), 16, small_teacher(1))


def test_each_architecture_gets_its_distillation_schedule_unless_one_is_given():
    from converter.student import DEFAULT_SCHEDULE, SCHEDULES
    te = StudentConfig().for_architecture("teacher-encoder")
    assert (te.architecture, te.epochs, te.learning_rate) == ("teacher-encoder", *SCHEDULES["teacher-encoder"])
    assert (StudentConfig().for_architecture("pool-recent").epochs,
            StudentConfig().for_architecture("pool-recent").learning_rate) == DEFAULT_SCHEDULE
    given = StudentConfig(epochs=4, learning_rate=1e-3).for_architecture("teacher-encoder")
    assert (given.epochs, given.learning_rate) == (4, 1e-3)


def test_a_teacher_encoder_over_the_teachers_whole_window_needs_no_distillation():
    assert StudentConfig(history_len=50).for_architecture("teacher-encoder", teacher_window=50).epochs == 0
    assert StudentConfig(history_len=50).for_architecture("teacher-encoder", teacher_window=200).epochs == 10
    assert StudentConfig(history_len=50, epochs=3).for_architecture("teacher-encoder", teacher_window=50).epochs == 3
    assert StudentConfig(history_len=50).for_architecture("pool-recent", teacher_window=50).epochs == 30
