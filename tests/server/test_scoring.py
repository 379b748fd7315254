import numpy as np

from reranker_server.model import scoring
from reranker_server.model.tasks import BiEncoderTask, CrossEncoderTask

CROSS, BI = (
    CrossEncoderTask.__new__(CrossEncoderTask),
    BiEncoderTask.__new__(BiEncoderTask),
)  # finalize needs no encoder


def test_one_label_raw_is_the_logit_and_score_its_sigmoid() -> None:
    raw = scoring.cross_encoder_raw(np.array([[2.0], [-1.0]], dtype=np.float32))
    assert raw.tolist() == [2.0, -1.0]
    np.testing.assert_allclose(CROSS.finalize(raw, False), 1 / (1 + np.exp(-raw)))
    assert CROSS.finalize(raw, True).tolist() == [2.0, -1.0]


def test_two_label_score_is_the_positive_class_softmax() -> None:
    logits = np.array([[0.3, 1.7], [2.0, -0.5]], dtype=np.float32)
    final = CROSS.finalize(scoring.cross_encoder_raw(logits), False)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(final, softmax[:, 1], rtol=1e-6)


def test_cosine_ignores_scale_and_bi_encoder_scores_map_onto_0_1() -> None:
    query = np.array([1.0, 0.0])
    docs = np.array([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    cos = scoring.cosine(query, docs)
    np.testing.assert_allclose(cos, [1.0, 0.0, -1.0])
    assert BI.finalize(cos, False).tolist() == [1.0, 0.5, 0.0]  # (cos + 1) / 2
    assert BI.finalize(cos, True).tolist() == cos.tolist()  # TEI raw_scores: the cosine


def test_spearman() -> None:
    a = np.array([0.1, 0.5, 0.3, 0.9])
    assert scoring.spearman(a, a * 10) == 1.0
    assert scoring.spearman(a, -a) == -1.0
