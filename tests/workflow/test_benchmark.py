"""The workflow's throughput benchmark."""

from spacy_ember.workflow.benchmark import pipeline_throughput

from ..helpers import TRAIN_DATA, tiny_pipeline


def test_pipeline_throughput_restores_the_feature_cache():
    nlp = tiny_pipeline()
    extractor = nlp.get_pipe("causal_lm").extractor
    cache = extractor.cache
    assert cache is not None
    result = pipeline_throughput(nlp, [text for text, _ in TRAIN_DATA], repeats=1, batch_size=2)
    assert extractor.cache is cache
    assert result["n_texts"] == len(TRAIN_DATA)
    assert len(result["seconds"]["with"]) == len(result["seconds"]["without"]) == 1
    assert result["overhead"] == result["seconds"]["with"][0] / result["seconds"]["without"][0] - 1
