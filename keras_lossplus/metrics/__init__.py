"""Retrieval metrics of embeddings: Recall@K, Precision@1, R-precision,
MAP@R and NDCG@K, as `keras.metrics.Metric` classes scoring each batch in-batch
(for `model.compile(metrics=[...])`, compiled with XLA), and as pure
functions scoring queries in-batch or against a held-out reference set;
and list-wise ranking metrics of scored lists with graded relevance (NDCG,
DCG, MRR, MAP, Precision@k, Recall@k, as in keras-rs), as classes and as
per-list functions.

>>> import keras_lossplus as klp
>>> metric = klp.metrics.RecallAtK(k=5)
"""

from keras_lossplus.metrics.language import Perplexity, TokenAccuracy
from keras_lossplus.metrics.classes import MAPAtR, NDCGAtK, PrecisionAtOne, RecallAtK, RPrecision
from keras_lossplus.metrics.ranking import (
    dcg, mean_average_precision, mean_reciprocal_rank, ndcg, precision_at_k, ranking_recall_at_k,
)
from keras_lossplus.metrics.ranking_classes import (
    DCG, NDCG, MeanAveragePrecision, MeanReciprocalRank, PrecisionAtK, RankingRecallAtK,
)
from keras_lossplus.metrics.retrieval import (
    has_positive, map_at_r, ndcg_at_k, precision_at_one, r_precision, recall_at_k,
)

__all__ = [
    "MAPAtR",
    "NDCGAtK",
    "PrecisionAtOne",
    "RPrecision",
    "RecallAtK",
    "has_positive",
    "map_at_r",
    "ndcg_at_k",
    "precision_at_one",
    "r_precision",
    "recall_at_k",
    # list-wise ranking metrics
    "DCG",
    "MeanAveragePrecision",
    "MeanReciprocalRank",
    "NDCG",
    "PrecisionAtK",
    "RankingRecallAtK",
    # language models, without the logits
    "Perplexity",
    "TokenAccuracy",
    "dcg",
    "mean_average_precision",
    "mean_reciprocal_rank",
    "ndcg",
    "precision_at_k",
    "ranking_recall_at_k",
]
