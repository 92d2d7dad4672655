"""Baselines for benchmarks/quality.py: what a competent engineer builds before a multi-task
model, trained on the same train split and given the same inputs.

- TF-IDF (word 1-2 grams) + logistic regression;
- a probe: frozen encoder (MiniLM) sentence embeddings, mean pooled and L2-normalised, +
  logistic regression;
- a stronger reference: a single-task fine-tune of the encoder on the flattened conversation.

Targets may be soft (annotator shares, 5-level distributions): `SoftLabelLR` fits a
multinomial logistic regression on them by replicating each row once per class with
sample_weight = that class's probability, which minimises the cross-entropy to the soft
target exactly. C is chosen by grouped 3-fold cross-validation on the train split.
"""

from __future__ import annotations

import logging
import math
import random
import time

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

log = logging.getLogger("qualaudit.benchmarks")
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


class SoftLabelLR:
    """Multinomial logistic regression on soft targets (rows of class probabilities).

    Each row is repeated once per class it gives weight to, labelled with that class and
    weighted by its probability: the weighted log-likelihood is then the cross-entropy to the
    soft target. `predict_proba` always returns all `n_classes` columns (0 for a class that no
    training row gave weight to); with a single class seen it predicts the mean target.

    Example:
        >>> lr = SoftLabelLR(C=1.0).fit(X, np.array([[0.3, 0.7], [1.0, 0.0]]))  # doctest: +SKIP
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X, targets: np.ndarray) -> SoftLabelLR:
        targets = np.asarray(targets, dtype=np.float64)
        self.n_classes_ = targets.shape[1]
        rows, classes = np.nonzero(targets > 0)
        self.mean_ = targets.mean(axis=0)
        self.lr_ = None
        if np.unique(classes).size >= 2:
            self.lr_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(
                X[rows], classes, sample_weight=targets[rows, classes])
        return self

    def predict_proba(self, X) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise RuntimeError("SoftLabelLR is not fitted yet; call fit(X, targets) first")
        if self.lr_ is None:
            return np.tile(self.mean_, (X.shape[0], 1))
        out = np.zeros((X.shape[0], self.n_classes_))
        out[:, self.lr_.classes_] = self.lr_.predict_proba(X)
        return out


def soft_cross_entropy(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(-np.mean(np.sum(targets * np.log(np.clip(probs, 1e-12, 1.0)), axis=1)))


def choose_C(X, targets: np.ndarray, groups: np.ndarray, grid=C_GRID, folds: int = 3) -> float:
    """The C of `grid` with the lowest held-out soft cross-entropy over grouped folds (turns of
    one transcript stay in one fold); 1.0 when there are too few groups to cross-validate."""
    n_folds = min(folds, np.unique(groups).size)
    if n_folds < 2:
        return 1.0
    losses = []
    for C in grid:
        fold_losses = []
        for train, held in GroupKFold(n_splits=n_folds).split(targets, groups=groups):
            model = SoftLabelLR(C).fit(X[train], targets[train])
            fold_losses.append(soft_cross_entropy(model.predict_proba(X[held]), targets[held]))
        losses.append(np.mean(fold_losses))
    return float(grid[int(np.argmin(losses))])


def fit_predict(X_train, y_train: np.ndarray, groups: np.ndarray, X_eval,
                grid=C_GRID) -> tuple[np.ndarray, float]:
    """(eval probabilities, chosen C) of a SoftLabelLR with C cross-validated on train.

    BLAS runs single-threaded here: these fits are small, and on a busy 2-core machine
    threaded BLAS made them ten times slower.
    """
    with threadpool_limits(1, user_api="blas"):
        C = choose_C(X_train, y_train, groups, grid)
        return SoftLabelLR(C).fit(X_train, y_train).predict_proba(X_eval), C


def tfidf_features(train_texts: list[str], eval_texts: list[str]):
    """Word 1-2 gram TF-IDF fitted on the train texts (sublinear tf; min_df 2 unless tiny)."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                 min_df=2 if len(train_texts) >= 100 else 1)
    return vectorizer.fit_transform(train_texts), vectorizer.transform(eval_texts)


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H): the mean over real tokens."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class Embedder:
    """Frozen encoder sentence embeddings (mean pooled, L2-normalised), cached per text.

    Texts are tokenized once, sorted by length and encoded in batches of at most
    `batch_tokens` padded tokens; `keep="end"` keeps the last `max_tokens` tokens of a long
    text (what decides a conversation), `keep="start"` the first (a turn, then its context).
    """

    def __init__(self, encoder_path: str, max_tokens: int = 256, batch_tokens: int = 8192) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(encoder_path)
        self.encoder = AutoModel.from_pretrained(encoder_path).eval()
        limit = getattr(self.encoder.config, "max_position_embeddings", max_tokens)
        self.max_tokens = min(max_tokens, limit)
        self.batch_tokens = batch_tokens
        self.cache: dict[tuple[str, str], np.ndarray] = {}
        self.seconds = 0.0
        self.tokens = 0

    @torch.inference_mode()
    def encode(self, texts: list[str], keep: str = "start") -> np.ndarray:
        """(len(texts), H) embeddings; texts already seen in this run come from the cache."""
        from qualaudit.batching import token_budget_batches

        todo = sorted({t for t in texts if (t, keep) not in self.cache})
        if todo:
            start = time.perf_counter()
            self.tokenizer.truncation_side = "left" if keep == "end" else "right"
            ids = self.tokenizer(todo, truncation=True, max_length=self.max_tokens)["input_ids"]
            for batch in token_budget_batches([len(x) for x in ids], self.batch_tokens):
                longest = max(len(ids[i]) for i in batch)
                input_ids = torch.full((len(batch), longest), self.tokenizer.pad_token_id or 0)
                mask = torch.zeros((len(batch), longest), dtype=torch.long)
                for row, i in enumerate(batch):
                    input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                    mask[row, :len(ids[i])] = 1
                hidden = self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
                vectors = torch.nn.functional.normalize(_mean_pool(hidden, mask), dim=-1).numpy()
                for i, vector in zip(batch, vectors):
                    self.cache[(todo[i], keep)] = vector
                self.tokens += int(mask.sum())
            self.seconds += time.perf_counter() - start
        return np.stack([self.cache[(t, keep)] for t in texts])


class _SingleTaskModel(torch.nn.Module):
    def __init__(self, encoder_path: str, n_classes: int) -> None:
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(encoder_path)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(_mean_pool(hidden, attention_mask))  # (B, K) logits


def _length_grouped(order: list[int], lengths: list[int], batch_size: int,
                    rng: random.Random, window: int = 50) -> list[list[int]]:
    """Batches of similar length: sort each window of `window` batches' worth of the shuffled
    order by length, cut it into batches, shuffle the batches (HF's length-grouped sampler)."""
    batches = []
    for k in range(0, len(order), window * batch_size):
        chunk = sorted(order[k:k + window * batch_size], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def fine_tune_single_task(train_texts: list[str], train_targets: np.ndarray, eval_texts: list[str],
                          encoder_path: str, *, epochs: int = 2, lr: float = 3e-5,
                          batch_size: int = 16, max_tokens: int = 256, seed: int = 0,
                          group_by_length: bool = False) -> np.ndarray:
    """Fine-tune the encoder + a linear head on (flattened conversation, soft target) with soft
    cross-entropy, keeping the END of long conversations; returns eval class probabilities.

    AdamW, 10% linear warm-up then linear decay, mean pooling, CPU or whatever torch picks.
    `group_by_length` batches examples of similar length (each epoch still sees every example
    once, batches in random order): the same objective with far less padding, 3x less
    compute where short and long conversations mix.
    """
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    tokenizer.truncation_side = "left"
    model = _SingleTaskModel(encoder_path, train_targets.shape[1])
    max_tokens = min(max_tokens, getattr(model.encoder.config, "max_position_embeddings", max_tokens))
    targets = torch.tensor(train_targets, dtype=torch.float32)
    steps = epochs * math.ceil(len(train_texts) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))

    def batch(texts: list[str]) -> dict[str, torch.Tensor]:
        enc = tokenizer(texts, truncation=True, max_length=max_tokens, padding=True,
                        return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    lengths = [len(ids) for ids in tokenizer(train_texts, truncation=True,
                                              max_length=max_tokens)["input_ids"]]
    model.train()
    for epoch in range(epochs):
        order = list(range(len(train_texts)))
        rng.shuffle(order)
        batches = (_length_grouped(order, lengths, batch_size, rng) if group_by_length
                   else [order[k:k + batch_size] for k in range(0, len(order), batch_size)])
        for index in batches:
            logits = model(**batch([train_texts[i] for i in index]))
            loss = -(targets[index] * torch.log_softmax(logits, -1)).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        log.info("single-task fine-tune: epoch %d/%d, last loss %.3f", epoch + 1, epochs, loss.item())
    model.eval()
    probs = np.zeros((len(eval_texts), train_targets.shape[1]))
    by_length = sorted(range(len(eval_texts)), key=lambda i: len(eval_texts[i]))
    with torch.inference_mode():
        for k in range(0, len(by_length), 32):
            index = by_length[k:k + 32]
            probs[index] = torch.softmax(model(**batch([eval_texts[i] for i in index])), -1).numpy()
    return probs
