import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from labelcon.heads.lexical import LexicalFeatures

TEXTS = ["wheat exports rose in march", "wheat prices fell", "crude oil prices rose", "oil exports fell in march"]


def test_matches_sklearn_tfidf_with_the_documented_settings():
    ours = LexicalFeatures().fit(TEXTS).transform(TEXTS + ["unseen words only"])
    plain = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(TEXTS)
    np.testing.assert_allclose(ours.toarray(), plain.transform(TEXTS + ["unseen words only"]).toarray(), atol=1e-6)
    norms = np.sqrt(np.asarray(ours.multiply(ours).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms, [1, 1, 1, 1, 0], atol=1e-6)  # unit rows; a text of unknown words is zero


def test_save_load_round_trip(tmp_path):
    lex = LexicalFeatures(ngram_max=1, min_df=1).fit(TEXTS)
    back = LexicalFeatures.load(lex.save(tmp_path / "lex"))
    assert (back.ngram_max, back.min_df) == (1, 1)
    assert (back.transform(TEXTS) != lex.transform(TEXTS)).nnz == 0


def test_too_few_texts_for_min_df_keep_every_term():
    assert LexicalFeatures(min_df=5).fit(["one text", "another"]).transform(["text"]).nnz == 1


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        LexicalFeatures().transform(["x"])
    with pytest.raises(ValueError, match="ngram_max"):
        LexicalFeatures(ngram_max=0)
