"""scikit-learn's estimator checks that dbn's estimators are expected to fail, each with its reason (test material)."""

from __future__ import annotations

from dbn.sklearn import DBNClassifier, RBMTransformer

_OUT_OF_RANGE = ("the check fits on data outside [0, 1] (blobs, standard normal, shifted or scaled uniform "
                 "values), which DBNClassifier's Bernoulli visible units reject with a ValueError; "
                 "it passes behind MinMaxScaler(clip=True)")
_RANGE_CHECKS = (
    "check_estimators_overwrite_params", "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit",
    "check_estimators_dtypes", "check_pipeline_consistency", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_preserve_dtypes", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
)
_CLASSIFIER_RANGE_CHECKS = ("check_classifier_data_not_an_array", "check_classifiers_classes",
                            "check_classifiers_train")
#: checks that fail whatever the data, and why: BernoulliRBM's own two expected failures
SCORE_SAMPLES_XFAILS = {
    "check_methods_sample_order_invariance": "score_samples flips one random bit per row, drawn from random_state in "
                                             "row order (as BernoulliRBM does; scikit-learn expects this failure too)",
    "check_methods_subset_invariance": "score_samples flips one random bit per row, drawn from random_state in row "
                                       "order: a subset gets other bits (as BernoulliRBM; scikit-learn expects it too)",
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """scikit-learn's estimator checks that these estimators fail, each with the reason.

    Pass it on: ``parametrize_with_checks([RBMTransformer()], expected_failed_checks=expected_failed_checks)``.
    """
    if isinstance(estimator, RBMTransformer):  # takes any finite input, as BernoulliRBM does
        return dict(SCORE_SAMPLES_XFAILS)
    if isinstance(estimator, DBNClassifier):
        return dict.fromkeys(_RANGE_CHECKS + _CLASSIFIER_RANGE_CHECKS, _OUT_OF_RANGE)
    return {}
