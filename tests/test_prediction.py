"""The prediction stage's hooks for callers that score other embeddings of the same items."""

from __future__ import annotations

import numpy as np
import pytest

from labelcon import Labelcon
from labelcon.prediction import Features
from tests.helpers import FAST, make_items


def test_mixed_mixes_other_head_scores_with_the_lexical_vote_as_scores_does(toy_data) -> None:
    model = Labelcon(**FAST, lexical=0.25).fit(toy_data["train"], toy_data["dev"], show_progress=False)
    stage, texts = model.stage_, [item["text"] for item in make_items(12, 7)]
    embeddings = model.encode(texts)
    items = Features(embeddings, texts)
    np.testing.assert_array_equal(stage.mixed(stage.head.predict_scores(embeddings), items), stage.scores(items))
    other = stage.head.predict_scores(embeddings[::-1].copy())  # scores of other embeddings, these items' votes
    assert not np.allclose(stage.mixed(other, items), stage.mixed(stage.head.predict_scores(embeddings), items))
    with pytest.raises(ValueError, match="give the items' texts too"):
        stage.mixed(other, Features(embeddings))
