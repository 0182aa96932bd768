"""Training of the reference teacher: full softmax cross-entropy, early stopping on validation NDCG@10."""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..data import Split
from ..evaluate import evaluate
from ..progress import progress, say
from ..tf_env import keras, tf
from ..trainlog import TrainLog
from .sasrec import SASRecConfig, SASRecNet, SASRecTeacher, pad_left


def training_windows(train: Sequence[np.ndarray], max_len: int, rng: Optional[np.random.Generator] = None):
    """Per user: a window of at most ``max_len + 1`` items; inputs = all but its last item, targets = the
    window shifted by one. With ``rng``, histories longer than the window contribute a random window
    (a new one every epoch), so their older interactions are trained on too; without, the last one."""
    inputs, targets = [], []
    for seq in train:
        if len(seq) < 2:
            continue
        end = len(seq)
        if rng is not None and len(seq) > max_len + 1:
            end = int(rng.integers(max_len + 1, len(seq) + 1))
        w = np.asarray(seq[max(0, end - max_len - 1):end])
        inputs.append(w[:-1])
        targets.append(w[1:])
    return inputs, targets


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Users grouped by similar length (little padding), shuffled within length bands and across batches."""
    order = np.lexsort((rng.random(len(lengths)), lengths // 16))
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _step_function(net, opt):
    """One optimizer step of full softmax cross-entropy over the catalog, at every non-padding position."""
    variables = net.trainable_variables
    opt.build(variables)
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec], reduce_retracing=True)
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            table = net.item_table(training=True)  # one draw of ID dropout for the history and the scores
            hidden = net.encode(inputs, training=True, table=table)
            mask = targets > 0
            h = tf.boolean_mask(hidden, mask)
            y = tf.boolean_mask(targets, mask) - 1
            logits = tf.matmul(h, table[1:], transpose_b=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss
    return step


def _epoch(step, sequences: Sequence[np.ndarray], c: SASRecConfig, rng: np.random.Generator, desc: str) -> float:
    """One pass over ``sequences`` in length-grouped batches; returns the mean loss."""
    inputs, targets = training_windows(sequences, c.max_len, rng if c.random_windows else None)
    batches = _batches(np.array([len(x) for x in inputs]), c.batch_size, rng)
    losses = []
    for b in progress(batches, desc=desc, total=len(batches)):
        x = pad_left([inputs[i] for i in b], c.max_len, offset=1, multiple=16)
        y = pad_left([targets[i] for i in b], c.max_len, offset=1, multiple=16)
        losses.append(float(step(x, y)))
    return float(np.mean(losses))


def refit_teacher(teacher: SASRecTeacher, split: Split, config: Optional[SASRecConfig] = None,
                  log: Callable[[str], None] = say) -> List[float]:
    """Fine-tune a selected teacher on every interaction but the test ones (train + the validation item).

    Model selection is over by then (validation chose the weights); this adds each user's most recent
    known interaction to what the model has learned, as a server retrains on all data before serving.
    A fixed, small number of epochs at a reduced learning rate (``refit_epochs``, ``refit_lr_scale``).
    """
    c = config or teacher.config
    rng = np.random.default_rng(c.seed + 1)
    opt = keras.optimizers.Adam(learning_rate=c.learning_rate * c.refit_lr_scale)
    step = _step_function(teacher.net, opt)
    losses = []
    for epoch in range(1, c.refit_epochs + 1):
        losses.append(_epoch(step, split.test.histories, c, rng, f"refit {epoch}"))
        log(f"refit epoch {epoch}/{c.refit_epochs} on train + validation items  loss {losses[-1]:.4f}")
    return losses


def train_sasrec(split: Split, item_ids: List[str], text_vectors: Optional[np.ndarray] = None,
                 config: Optional[SASRecConfig] = None,
                 log: Callable[[str], None] = say, max_minutes: Optional[float] = None) -> "tuple[SASRecTeacher, TrainLog]":
    """Train a SASRec teacher on ``split.train``; keep the weights of the best validation NDCG@10, then
    refit them on train + validation items (see :func:`refit_teacher`). ``max_minutes``: a budget for this
    run below the config's own (an ensemble's later members), not saved with the teacher."""
    c = config or SASRecConfig()
    budget = c.max_minutes if max_minutes is None else min(c.max_minutes, max_minutes)
    keras.utils.set_random_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    n_items = len(item_ids)
    net = SASRecNet(n_items, c, text_vectors if c.use_text else None)
    teacher = SASRecTeacher(net, item_ids)
    step = _step_function(net, keras.optimizers.Adam(learning_rate=c.learning_rate))
    result = TrainLog()
    best_weights = net.get_weights()
    bad_evals = 0
    start = time.time()
    for epoch in range(1, c.max_epochs + 1):
        row: Dict[str, float] = {"epoch": epoch, "loss": _epoch(step, split.train, c, rng, f"epoch {epoch}"),
                                 "minutes": (time.time() - start) / 60}
        out_of_time = row["minutes"] >= budget
        if epoch % c.eval_every == 0 or epoch == c.max_epochs or out_of_time:
            valid = evaluate(teacher, split.valid, n_items, ks=(10,))
            row.update({f"valid_{k}": v for k, v in valid.items() if k != "users"})
            if valid["NDCG@10"] > result.best_valid.get("NDCG@10", -1.0):
                result.best_epoch, result.best_valid = epoch, valid
                best_weights = net.get_weights()
                bad_evals = 0
            else:
                bad_evals += 1
        result.epochs.append(row)
        log(f"epoch {epoch:3d}  loss {row['loss']:.4f}  "
            + (f"valid NDCG@10 {row['valid_NDCG@10']:.4f} HR@10 {row['valid_HR@10']:.4f}  "
               if "valid_NDCG@10" in row else "")
            + f"[{row['minutes']:.1f} min]")
        if bad_evals >= c.patience:
            result.stopped = f"early stop: no validation gain in {c.patience} evaluations"
            break
        if out_of_time:
            result.stopped = f"time budget of {budget:g} min reached"
            break
    else:
        result.stopped = f"max_epochs={c.max_epochs} reached"
    net.set_weights(best_weights)
    log(f"{result.stopped}; best epoch {result.best_epoch} "
        f"(valid NDCG@10 {result.best_valid.get('NDCG@10', float('nan')):.4f}), {(time.time() - start) / 60:.1f} min")
    refit = refit_teacher(teacher, split, c, log) if c.refit_epochs else []
    result.seconds = time.time() - start
    teacher.info = {"best_epoch": result.best_epoch, "valid": result.best_valid, "refit_losses": refit,
                    "train_seconds": round(result.seconds, 1), "stopped": result.stopped,
                    "epochs": result.epochs}
    log(f"training done in {result.seconds / 60:.1f} min")
    return teacher, result
