"""hpod_client: the Python client of the hpod hyperparameter-optimization daemon.

Standard library only. Optuna-shaped: an Optuna objective runs unchanged;
only the import and the study's creation (which declares the search space,
as hpod studies do) change:

    import hpod_client as optuna

    study = optuna.create_study(
        storage="http://127.0.0.1:8080", study_name="quadratic", load_if_exists=True,
        params={"x": optuna.distributions.FloatDistribution(-10, 10)},
        pruner=optuna.pruners.MedianPruner())

    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        for step in range(10):
            trial.report((x - 2) ** 2 + 1 / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return (x - 2) ** 2

    study.optimize(objective, n_trials=50, n_jobs=4)
    print(study.best_params, study.best_value)

The lower-level Client (create_study(spec), ask, tell, report, enqueue...)
is the REST API of docs/API.md in Python. Errors from the daemon raise
HpodError with the API's code ("not_found", "conflict", ...), HTTP status,
message, field and request id. Each thread keeps one keep-alive connection;
503 answers and connection failures are retried with exponential backoff,
and a request whose answer was lost is resent only when that is safe (see
hpod_client/_http.py: everything but ask, enqueue and delete).
"""

from . import distributions, exceptions, logging, pruners, samplers, study, trial
from ._client import (Client, FrozenTrial, Study, StudyDirection, Trial, TrialList, TrialState,
                      create_study, delete_study, get_all_study_names, load_study)
from ._errors import DuplicatedStudyError, HpodError, SearchSpaceError, TrialPruned

__all__ = ["Client", "Study", "Trial", "FrozenTrial", "TrialList", "TrialState", "StudyDirection",
           "HpodError", "TrialPruned", "SearchSpaceError", "DuplicatedStudyError",
           "create_study", "load_study", "delete_study", "get_all_study_names",
           "distributions", "exceptions", "logging", "pruners", "samplers", "study", "trial"]
__version__ = "0.2.0"
