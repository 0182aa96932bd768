"""Server models: the Teacher interface and the reference SASRec teacher.

Importing this package imports TensorFlow (for the reference teacher).
"""
from .base import Teacher
from .sasrec import SASRecConfig, SASRecNet, SASRecTeacher
from .train import TrainLog, refit_teacher, train_sasrec

__all__ = ["Teacher", "SASRecConfig", "SASRecNet", "SASRecTeacher", "TrainLog", "refit_teacher", "train_sasrec"]
