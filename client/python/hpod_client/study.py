"""Study types, where Optuna code looks for them (optuna.study.StudyDirection)."""

from ._client import Study, StudyDirection, create_study, delete_study, load_study

__all__ = ["Study", "StudyDirection", "create_study", "load_study", "delete_study"]
