"""Topic clusters of the opening customer turns: strata for the AI-vs-human comparison when
the user names no strata column.

How clusters are made (reproducible: the same transcripts and seed give the same clusters):
each conversation's opening is the text of its customer turns before the first agent turn
(the first customer turn when an agent spoke first), redacted of personal data; TF-IDF
(scikit-learn, English stop words, unigrams and bigrams, terms in at least 2 openings, at
most 20,000 terms, sublinear tf) then k-means (k = `n_clusters`, default 8, fewer when there
are fewer distinct openings; `random_state=seed`, 10 initialisations; above
`MINIBATCH_ABOVE` openings, mini-batch k-means with the same seed, 3 initialisations, so that
a million openings cluster in bounded time). Each cluster is named by its 3 heaviest
centroid terms. No torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..redact import redact_text
from ..schema import Transcript

DEFAULT_CLUSTERS = 8
MINIBATCH_ABOVE = 50_000


def opening_text(transcript: Transcript) -> str:
    """The customer turns before the first agent turn, joined; the first customer turn when
    an agent spoke first; "" without customer turns."""
    opening = []
    for turn in transcript.turns:
        if turn.role == "agent":
            break
        if turn.role == "customer":
            opening.append(turn.text)
    if not opening:
        opening = [t.text for t in transcript.turns if t.role == "customer"][:1]
    return " ".join(opening)


def topic_strata(ids: Sequence[str], openings: Mapping[str, str], n_clusters: int = DEFAULT_CLUSTERS,
                 seed: int = 0, minibatch_above: int = MINIBATCH_ABOVE,
                 ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """(stratum code per id, -1 where no opening text; cluster names; how they were made)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [redact_text(openings.get(i, "")) for i in ids]
    have = np.flatnonzero([bool(t.strip()) for t in texts])
    codes = np.full(len(ids), -1, dtype=np.int64)
    info: dict[str, Any] = {"method": "TF-IDF + k-means",
                            "seed": seed, "with_text": int(have.size),
                            "without_text": int(len(ids) - have.size)}
    if have.size < 2:
        info["note"] = "fewer than 2 conversations with an opening customer turn: no clusters"
        return codes, [], info
    documents = [texts[i] for i in have]
    vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), min_df=2,
                                 max_features=20_000, sublinear_tf=True)
    try:
        matrix = vectorizer.fit_transform(documents)
    except ValueError:  # every term in fewer than 2 openings: fall back to all terms
        vectorizer = TfidfVectorizer(ngram_range=(1, 1), sublinear_tf=True)
        matrix = vectorizer.fit_transform(documents)
    distinct = len(set(documents))
    k = max(1, min(n_clusters, distinct, matrix.shape[0]))
    if matrix.shape[0] > minibatch_above:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3,
                                batch_size=4096).fit(matrix)
        info["method"] += " (mini-batch)"
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(matrix)
    codes[have] = model.labels_
    terms = np.asarray(vectorizer.get_feature_names_out())
    names = [f"topic {c + 1}: " + ", ".join(terms[np.argsort(-model.cluster_centers_[c])[:3]])
             for c in range(k)]
    info["k"] = k
    return codes, names, info
