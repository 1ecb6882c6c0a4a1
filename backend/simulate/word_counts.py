"""Word n-gram counts of a simulated corpus, analysed once, for the TF-IDF students.

A simulation refits the student dozens of times on subsets of one corpus and scores the pool after
every fit. Tokenising the same texts again each time took about four fifths of a TF-IDF run on
SpamAssassin (86 of 104 s in a profiled greedy-margin run of `lr`). `CorpusWordCounts` analyses every pool and test text once; `CountedTextFeatures`
is the backend's `TextFeatures` whose word vectorizer reads those counts instead of the texts.

The matrices equal those of the backend's own `TextFeatures`, element for element and in the same
order. Only the counting step is replaced, and it numbers the vocabulary as scikit-learn's
`CountVectorizer` does: features in order of first appearance, entries sorted by that number
before the vocabulary is sorted by name. Sorting, the `max_features` cap and TF-IDF weighting
stay scikit-learn's own code. `tests/unit/test_word_counts.py` checks the equality on generated
text, down to the classifier's probabilities. A text outside the corpus is tokenised as usual,
and so is every text with a scikit-learn older than 1.9, whose counting step this was not checked
against.
"""

import hashlib

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from backend.students.features import TextFeatures

try:
    from sklearn.utils._sparse import _align_api_if_sparse
except ImportError:  # scikit-learn < 1.9: count as usual
    _align_api_if_sparse = None

# The counts of the corpus used last in this process, so that every fitter unpickled in a worker
# shares them. One corpus at a time, because a call with several datasets runs them in turn.
_BUILT: dict[str, "_Counts"] = {}


class CorpusWordCounts:
    """Word n-gram counts of every text of a corpus, built on first use and shared by the process.

    Parameters
    ----------
    texts : list of str
        The texts a simulation fits and scores on (pool and test set).

    Only the texts travel when the object is pickled to a worker process; each process analyses
    them once, on first use. Copies (scikit-learn's `clone` deep-copies parameters) share the
    counts: they are never modified after they are built.
    """

    def __init__(self, texts):
        self.texts = list(texts)
        digest = hashlib.sha1()
        for text in self.texts:
            # The length prefix keeps ["a\nb"] and ["a", "b"] apart. "surrogatepass" accepts the lone
            # surrogates of truncated emoji, as the vectorizers do.
            digest.update(f"{len(text)}:".encode() + text.encode("utf-8", "surrogatepass"))
        self.digest = digest.hexdigest()

    def __getstate__(self):
        return {"texts": self.texts, "digest": self.digest}

    def __deepcopy__(self, memo):
        return self

    def built(self, analyzer_params: dict) -> "_Counts":
        """Return the counts made with `analyzer_params`, analysing the texts on first use."""
        key = f"{self.digest}-{sorted(analyzer_params.items())}"
        if key not in _BUILT:
            analyze = TfidfVectorizer(**analyzer_params).build_analyzer()
            counts = _Counts(self.texts, analyze)
            _BUILT.clear()
            _BUILT[key] = counts
        return _BUILT[key]


class _Counts:
    """Per text: its features' ids in order of first appearance, and how often each appears."""

    def __init__(self, texts, analyze):
        ids: dict[str, int] = {}
        row_ids, row_counts, lengths = [], [], []
        for text in texts:
            counter: dict[int, int] = {}
            for feature in analyze(text):
                feature_id = ids.setdefault(feature, len(ids))
                counter[feature_id] = counter.get(feature_id, 0) + 1
            row_ids.extend(counter.keys())
            row_counts.extend(counter.values())
            lengths.append(len(counter))
        self.terms = np.array(list(ids), dtype=object)
        self.ids_of_terms = ids
        self.feature_ids = np.asarray(row_ids, dtype=np.int64)
        self.counts = np.asarray(row_counts, dtype=np.intc)
        self.starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.row_of_text = {}
        for row, text in enumerate(texts):
            self.row_of_text.setdefault(text, row)

    def rows(self, texts):
        """Return the rows of `texts`, or None when one of them is not in the corpus."""
        rows = [self.row_of_text.get(text) for text in texts]
        return None if any(row is None for row in rows) else np.asarray(rows, dtype=np.int64)

    def entries(self, rows):
        """Concatenate the rows' (feature id, count) entries; return them with each row's length."""
        lengths = self.starts[rows + 1] - self.starts[rows]
        offsets = np.repeat(self.starts[rows] - (np.cumsum(lengths) - lengths), lengths)
        positions = np.arange(int(lengths.sum())) + offsets
        return self.feature_ids[positions], self.counts[positions], lengths


class _CountedTfidfVectorizer(TfidfVectorizer):
    """`TfidfVectorizer` whose counting step reads `CorpusWordCounts` when every text is in them.

    `corpus_counts` is set as an attribute after construction, not as a parameter: the vectorizer
    is built inside `CountedTextFeatures` and never cloned on its own.
    """

    corpus_counts = None

    def fit(self, raw_documents, y=None):
        self.columns_by_feature_id_ = None
        super().fit(raw_documents, y)
        self.columns_by_feature_id_ = self._columns_by_feature_id()
        return self

    def fit_transform(self, raw_documents, y=None):
        self.columns_by_feature_id_ = None
        X = super().fit_transform(raw_documents, y)
        self.columns_by_feature_id_ = self._columns_by_feature_id()
        return X

    def _counts(self):
        """Return the corpus counts for this vectorizer's analyzer, or None to count as usual."""
        if self.corpus_counts is None or _align_api_if_sparse is None:
            return None
        return self.corpus_counts.built(_analyzer_params(self))

    def _count_vocab(self, raw_documents, fixed_vocab):
        documents = list(raw_documents)
        counts = self._counts()
        rows = counts.rows(documents) if counts is not None else None
        columns_by_feature_id = getattr(self, "columns_by_feature_id_", None)
        if rows is None or (fixed_vocab and columns_by_feature_id is None):
            return super()._count_vocab(documents, fixed_vocab)

        feature_ids, values, lengths = counts.entries(rows)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        if fixed_vocab:
            vocabulary = self.vocabulary_
            columns = columns_by_feature_id[feature_ids]
            known = columns >= 0
            columns, values = columns[known], values[known]
            indptr = np.concatenate([[0], np.cumsum(_row_sums(known, lengths))])
        else:
            # Number features in order of first appearance, as CountVectorizer does.
            unique_ids, first, inverse = np.unique(feature_ids, return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            number = np.empty_like(order)
            number[order] = np.arange(order.size)
            columns = number[inverse]
            vocabulary = {counts.terms[feature_id]: int(n) for n, feature_id in enumerate(unique_ids[order])}
            if not vocabulary:
                raise ValueError("empty vocabulary; perhaps the documents only contain stop words")

        index_dtype = np.int32 if indptr[-1] <= np.iinfo(np.int32).max else np.int64
        X = sp.csr_array(
            (values.astype(np.intc), columns.astype(index_dtype), indptr.astype(index_dtype)),
            shape=(len(documents), len(vocabulary)), dtype=self.dtype,
        )
        X.sort_indices()
        return vocabulary, _align_api_if_sparse(X)

    def _columns_by_feature_id(self):
        """Return the column of each corpus feature id in the fitted vocabulary (-1 where it has
        none), or None without corpus counts."""
        counts = self._counts()
        if counts is None:
            return None
        columns = np.full(len(counts.terms), -1, dtype=np.int32)
        for term, column in self.vocabulary_.items():
            feature_id = counts.ids_of_terms.get(term)
            if feature_id is not None:
                columns[feature_id] = column
        return columns


class CountedTextFeatures(TextFeatures):
    """`TextFeatures` whose word TF-IDF reads its counts from `CorpusWordCounts`. Character n-grams,
    when the texts need them, are computed as usual.

    Parameters
    ----------
    corpus_counts : CorpusWordCounts
    char_ngrams, unspaced_threshold
        See `TextFeatures`.
    """

    def __init__(self, corpus_counts=None, char_ngrams="auto", unspaced_threshold=0.05):
        super().__init__(char_ngrams=char_ngrams, unspaced_threshold=unspaced_threshold)
        self.corpus_counts = corpus_counts

    def _vectorizers(self):
        words, chars = super()._vectorizers()
        counted = _CountedTfidfVectorizer(**words.get_params())
        counted.corpus_counts = self.corpus_counts
        return counted, chars


def _analyzer_params(vectorizer) -> dict:
    """Return the parameters that decide which features a text yields."""
    names = ("input", "encoding", "decode_error", "strip_accents", "lowercase", "preprocessor", "tokenizer",
             "analyzer", "stop_words", "token_pattern", "ngram_range")
    return {name: vectorizer.get_params()[name] for name in names}


def _row_sums(mask: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Number of True entries of `mask` in each consecutive row of `lengths` entries."""
    ends = np.cumsum(lengths)
    totals = np.concatenate([[0], np.cumsum(mask)])
    return totals[ends] - totals[ends - lengths]
