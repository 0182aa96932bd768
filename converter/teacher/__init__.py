"""Server models: the Teacher interface, the reference SASRec teacher and ensembles of teachers.

``Teacher`` (the plug-in interface) imports without TensorFlow, so a teacher of your own needs no Keras;
the reference SASRec teacher loads TensorFlow when first used.
"""
from .base import Teacher, TextHead
from .ensemble import EnsembleTeacher, load_teacher, member_configs, teacher_configs, train_ensemble, train_teacher

__all__ = ["Teacher", "TextHead", "EnsembleTeacher", "load_teacher", "member_configs", "teacher_configs", "train_ensemble", "train_teacher", "SASRecConfig", "SASRecNet", "SASRecTeacher", "TrainLog", "refit_teacher", "train_sasrec"]


def __getattr__(name: str):
    if name in ("SASRecConfig", "SASRecNet", "SASRecTeacher"):
        from . import sasrec
        return getattr(sasrec, name)
    if name in ("TrainLog", "refit_teacher", "train_sasrec"):
        from . import train
        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
