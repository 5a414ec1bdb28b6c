"""The token store's record: the prior the search draws around leaves out super-clusters a proxy cannot train on."""

from __future__ import annotations

import numpy as np
import pytest

from climb_dagster.core.common.errors import ClimbInputError
from climb_dagster.core.experiment.records import TokenStoreRef
from climb_dagster.core.search.sampling import sample_mixtures


def test_search_prior_is_the_natural_mixture_when_every_super_cluster_can_feed_a_window():
    ref = TokenStoreRef("/s/t/k", "k", 512, (300, 200, 600), (3, 2, 6))
    assert ref.untrainable(128) == []
    assert np.array_equal(ref.search_prior(128), ref.prior())


def test_a_super_cluster_whose_documents_were_not_stored_gets_no_weight():
    # Super-cluster 1 holds 50 corpus tokens but none were stored (its documents fell outside the drops' samples).
    ref = TokenStoreRef("/s/t/k", "k", 512, (3000, 50, 6000), (30, 1, 60), stored_tokens=(1000, 0, 2000))
    assert ref.untrainable(128) == [1]
    prior = ref.search_prior(128)
    assert prior[1] == 0.0 and prior.sum() == pytest.approx(1.0)
    assert prior[0] / prior[2] == pytest.approx(3000 / 6000), "the others keep their natural ratio"
    draws = sample_mixtures(200, prior, seed=0)
    assert (draws[:, 1] == 0).all()
    assert ref.prior()[1] > 0, "the natural mixture (reported, exported) still counts it"


def test_a_store_where_nothing_can_feed_a_proxy_is_refused_with_the_counts():
    ref = TokenStoreRef("/s/t/k", "k", 512, (3000, 50), (30, 1), stored_tokens=(100, 0))
    with pytest.raises(ClimbInputError, match=r"stored: \[100, 0\]\); raise drop_tokens' max_stored_tokens"):
        ref.search_prior(128)
