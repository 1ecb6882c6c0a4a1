"""Text features shared by every student: word TF-IDF, plus character TF-IDF where words fail."""

import re

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

# Word tokens plus single punctuation or symbol characters, so "!!!" or an emoji is a feature.
TOKEN_PATTERN = r"(?u)\w+|[^\w\s]"

# Four or more characters in a row from scripts written without spaces between words (Chinese,
# Japanese kana, Thai, Lao, Myanmar, Khmer). There a whole sentence is one "word", so only
# character n-grams give useful features.
_UNSPACED_RUN = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff]{4,}"
)


def unspaced_share(texts) -> float:
    """Return the fraction of `texts` that contain a run of text from a script written without spaces."""
    if not len(texts):
        return 0.0
    return sum(1 for text in texts if _UNSPACED_RUN.search(text)) / len(texts)


class TextFeatures(TransformerMixin, BaseEstimator):
    """Word 1-2-gram TF-IDF, with char_wb 2-4-gram TF-IDF added when the corpus needs it.

    Character n-grams cost about three quarters of prediction time on space-separated text while
    adding almost no accuracy there, so ``char_ngrams="auto"`` adds them only when at least
    `unspaced_threshold` of the training texts contain long runs without spaces.

    Parameters
    ----------
    char_ngrams : {"auto", True, False}
        Whether to add character n-grams; "auto" decides at fit time.
    unspaced_threshold : float
        Share of unspaced training texts from which "auto" adds character n-grams.
    """

    def __init__(self, char_ngrams="auto", unspaced_threshold=0.05):
        self.char_ngrams = char_ngrams
        self.unspaced_threshold = unspaced_threshold

    def _vectorizers(self):
        words = TfidfVectorizer(ngram_range=(1, 2), token_pattern=TOKEN_PATTERN, sublinear_tf=True,
                                max_features=20000, dtype=np.float32)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True,
                                max_features=30000, dtype=np.float32)
        return words, chars

    def fit(self, X, y=None):
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None):
        if self.char_ngrams not in ("auto", True, False):
            raise ValueError(f"char_ngrams must be 'auto', True or False; got {self.char_ngrams!r}.")
        texts = list(X)
        words, chars = self._vectorizers()
        use_chars = self.char_ngrams is True or (
            self.char_ngrams == "auto" and unspaced_share(texts) >= self.unspaced_threshold
        )
        blocks = []
        try:
            blocks.append(words.fit_transform(texts))
            self.words_ = words
        except ValueError:  # no word token at all, e.g. only CJK runs the pattern keeps whole
            self.words_ = None
            use_chars = True
        self.chars_ = None
        if use_chars:
            blocks.append(chars.fit_transform(texts))
            self.chars_ = chars
        return sp.hstack(blocks, format="csr") if len(blocks) > 1 else blocks[0].tocsr()

    def transform(self, X):
        check_is_fitted(self, "chars_")
        texts = list(X)
        blocks = [vectorizer.transform(texts) for vectorizer in (self.words_, self.chars_) if vectorizer is not None]
        return sp.hstack(blocks, format="csr") if len(blocks) > 1 else blocks[0].tocsr()
