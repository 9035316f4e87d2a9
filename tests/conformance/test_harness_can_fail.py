"""The comparison helpers must catch real differences, not just pass on pickle copies."""

from __future__ import annotations

import copy
import pickle
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KDTree, KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from .cases import composite_cases
from .compare import assert_same_estimator, assert_same_outputs

RNG = np.random.RandomState(0)
X = RNG.normal(size=(40, 4))
Y = np.arange(40) % 3


def round_trip(est: Any) -> Any:
    return pickle.loads(pickle.dumps(est))


def fails_at(path: str) -> Any:
    """``pytest.raises`` for an AssertionError naming exactly ``path``."""
    return pytest.raises(AssertionError, match=rf"mismatch at {re.escape(path)}:")


@pytest.fixture
def pipeline() -> Pipeline:
    est = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    return est.fit(X, Y)


def test_perturbed_coef_is_reported_with_its_path(pipeline: Pipeline) -> None:
    restored = round_trip(pipeline)
    assert_same_estimator(pipeline, restored)
    coef = restored.steps[1][1].coef_
    coef[0, 3] = np.nextafter(coef[0, 3], np.inf)  # smallest possible change
    with fails_at("steps[1][1].coef_[0, 3]"):
        assert_same_estimator(pipeline, restored)


def test_different_outputs_are_detected(pipeline: Pipeline) -> None:
    restored = round_trip(pipeline)
    assert_same_outputs(pipeline, restored, X)
    restored.steps[1][1].intercept_ += 1.0
    with pytest.raises(AssertionError, match=r"predict_proba\(X\)"):
        assert_same_outputs(pipeline, restored, X)


def test_changed_parameter(pipeline: Pipeline) -> None:
    restored = round_trip(pipeline)
    restored.steps[1][1].C = 2.0
    with fails_at("steps[1][1].C"):
        assert_same_estimator(pipeline, restored)


def test_changed_dtype(pipeline: Pipeline) -> None:
    restored = round_trip(pipeline)
    restored[-1].coef_ = restored[-1].coef_.astype(np.float32)
    with pytest.raises(AssertionError, match="dtype"):
        assert_same_estimator(pipeline, restored)


def test_memory_layout(pipeline: Pipeline) -> None:
    # (lbfgs leaves coef_ in Fortran order from scikit-learn 1.8 on, in C order before)
    pipeline[-1].coef_ = np.asfortranarray(pipeline[-1].coef_)
    restored = round_trip(pipeline)
    assert pipeline[-1].coef_.flags.f_contiguous and not pipeline[-1].coef_.flags.c_contiguous
    restored[-1].coef_ = np.ascontiguousarray(restored[-1].coef_)
    with pytest.raises(AssertionError, match="original is F_CONTIGUOUS"):
        assert_same_estimator(pipeline, restored)


def test_missing_and_extra_attributes(pipeline: Pipeline) -> None:
    restored = round_trip(pipeline)
    del restored[-1].n_iter_
    with pytest.raises(AssertionError, match=re.escape("missing from copy ['n_iter_']")):
        assert_same_estimator(pipeline, restored)
    restored = round_trip(pipeline)
    restored[0]._cache = None  # private attributes count too: every entry of __dict__
    with pytest.raises(AssertionError, match=re.escape("only in copy ['_cache']")):
        assert_same_estimator(pipeline, restored)


def test_tree_nodes_are_compared() -> None:
    tree = DecisionTreeClassifier(random_state=0).fit(X, Y)
    restored = round_trip(tree)
    restored.tree_.threshold[0] += 1.0
    with fails_at("tree_.__getstate__()['nodes']['threshold'][0]"):
        assert_same_estimator(tree, restored)


def test_random_state_instances_are_compared() -> None:
    forest = RandomForestClassifier(n_estimators=2, random_state=np.random.RandomState(0))
    forest.fit(X, Y)
    restored = round_trip(forest)
    restored.random_state.random_sample()  # advance the copy's generator only
    with pytest.raises(AssertionError, match=re.escape("random_state.get_state()[2]")):
        assert_same_estimator(forest, restored)


def test_kd_tree_arrays_are_compared() -> None:
    knn = KNeighborsClassifier(algorithm="kd_tree").fit(X, Y)
    restored = round_trip(knn)
    restored._tree = KDTree(X + 1.0)
    with fails_at("_tree.get_arrays()[0][0, 0]"):
        assert_same_estimator(knn, restored, check_aliasing=False)


def test_sparse_contents_are_compared() -> None:
    svc = SVC().fit(sp.csr_matrix(np.where(X > 0, X, 0)), Y)
    restored = round_trip(svc)
    restored.support_vectors_.data[2] += 1.0
    with fails_at("support_vectors_.tocsr().data[2]"):
        assert_same_estimator(svc, restored)


def test_function_parameters_are_compared_by_identity() -> None:
    a = FunctionTransformer(np.log1p).fit(np.abs(X))
    b = round_trip(a)
    b.func = np.log
    with fails_at("func"):
        assert_same_estimator(a, b)


def test_broken_sharing_is_detected() -> None:
    vote = VotingClassifier([("a", LogisticRegression()), ("b", DecisionTreeClassifier())])
    vote.fit(X, Y)
    restored = round_trip(vote)
    # Same values, but no longer the very object held in estimators_.
    restored.named_estimators_["a"] = copy.deepcopy(restored.estimators_[0])
    with pytest.raises(AssertionError, match="shares this object"):
        assert_same_estimator(vote, restored)
    assert_same_estimator(vote, restored, check_aliasing=False)


def test_copy_must_not_share_arrays_with_the_original(pipeline: Pipeline) -> None:
    restored = round_trip(pipeline)
    restored[-1].coef_ = pipeline[-1].coef_
    with fails_at("steps[1][1].coef_"):
        assert_same_estimator(pipeline, restored)


class _Node:
    def __init__(self, value: Any) -> None:
        self.value = value
        self.self_ref = self


def test_cycles_terminate_and_differences_below_them_are_found() -> None:
    a = _Node(np.array([1.0, np.nan]))
    b = round_trip(a)
    assert_same_estimator(a, b)
    b.value[0] = 2.0
    with fails_at("value[0]"):
        assert_same_estimator(a, b)


def test_nan_aware_object_structured_and_masked_arrays() -> None:
    structured = np.array([(1, np.nan), (2, 3.0)], dtype=[("i", "i8"), ("f", "f8")])
    masked = np.ma.masked_array([1, 2, 3], mask=[False, True, False], dtype=object)
    value = {"obj": np.array([np.array([np.nan]), "x", None], dtype=object), "s": structured}
    value["m"] = masked
    restored = round_trip(value)
    assert_same_estimator(value, restored)
    restored["s"]["f"][1] = 4.0
    with fails_at("['s']['f'][1]"):
        assert_same_estimator(value, restored)
    restored = round_trip(value)
    restored["obj"][0][0] = 1.0
    with fails_at("['obj'][0][0]"):
        assert_same_estimator(value, restored)
    restored = round_trip(value)
    restored["m"].mask = [False, False, False]
    with fails_at("['m'].mask[1]"):
        assert_same_estimator(value, restored)


def test_different_dataframe_output_is_detected() -> None:
    case = next(c for c in composite_cases() if c.id == "columntransformer-pandas-output")
    est, X_test = case.make()
    restored = round_trip(est)
    assert_same_outputs(est, restored, X_test)
    restored.named_transformers_["num"].mean_[0] += 1.0
    with pytest.raises(AssertionError, match=r"transform\(X\)"):
        assert_same_outputs(est, restored, X_test)


class _Raiser(BaseEstimator):  # type: ignore[misc]
    """Estimator whose predict raises the configured exception type."""

    def __init__(self, error: type[Exception] = ValueError) -> None:
        self.error = error

    def fit(self, X: Any, y: Any = None) -> _Raiser:
        return self

    def predict(self, X: Any) -> Any:
        raise self.error("boom")


def test_exceptions_must_match() -> None:
    assert_same_outputs(_Raiser(ValueError), _Raiser(ValueError), X)
    with pytest.raises(AssertionError, match="original raised ValueError"):
        assert_same_outputs(_Raiser(ValueError), _Raiser(TypeError), X)


def test_available_methods_must_match() -> None:
    a = SVC(probability=True, random_state=0).fit(X, Y)
    b = round_trip(a)
    b.probability = False  # hides predict_proba through available_if
    with pytest.raises(AssertionError, match="predict_proba: available on original=True"):
        assert_same_outputs(a, b, X)


def test_different_classes_are_detected() -> None:
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    a = StandardScaler().fit(frame)
    b = round_trip(a)
    b.feature_names_in_ = b.feature_names_in_.astype(str)
    with pytest.raises(AssertionError, match="feature_names_in_"):
        assert_same_estimator(a, b)
    with fails_at("<root>"):
        assert_same_estimator(a, LogisticRegression())


def test_generator_state_is_compared() -> None:
    a = {"rng": np.random.default_rng(0)}
    b = round_trip(a)
    assert_same_estimator(a, b)
    b["rng"].random()
    with pytest.raises(AssertionError, match=re.escape("['rng'].bit_generator.state")):
        assert_same_estimator(a, b)
