"""How the prediction backends batch texts (emotion.prediction.backend.padded_batches): any
lengths, in any order, go into runs of at most batch_size whose padded tokens stay within the
stated bound of their real tokens, each text exactly once; and a text's scores do not depend
on the run it lands in (the tiny ONNX model, texts of mixed lengths in random order)."""

import random

import numpy as np
from conftest import HARD_TEXTS, make_texts
from hypothesis import given
from hypothesis import strategies as st

from emotion.prediction.backend import MAX_PADDING, padded_batches


@given(st.lists(st.integers(1, 128), max_size=300), st.integers(1, 64),
       st.sampled_from([0.0, 0.05, MAX_PADDING, 0.5, 3.0]))
def test_runs_hold_every_text_once_within_the_padding_bound(lengths, batch_size, max_padding):
    sequences = [[7] * length for length in lengths]
    seen = []
    for positions, ids, mask in padded_batches(sequences, batch_size, 0, max_padding):
        assert 1 <= len(positions) <= batch_size
        real = sum(lengths[i] for i in positions)
        assert ids.size <= (1 + max_padding) * real + 1e-9  # padded tokens within the bound
        assert ids.shape == mask.shape == (len(positions), max(lengths[i] for i in positions))
        assert mask.sum() == real and (ids[mask == 0] == 0).all()
        assert [int(row.sum()) for row in mask] == [lengths[i] for i in positions]
        seen += positions
    assert sorted(seen) == list(range(len(lengths)))


def test_a_text_scores_the_same_in_any_run(runtime_folders):
    from emotion.predict import TextClassifier

    texts = make_texts(200, random.Random(1))[0] + [text for text in HARD_TEXTS if text.strip()]
    classifier = TextClassifier(runtime_folders["onnx"], runtime="onnxruntime-float32")
    alone = np.concatenate([classifier.predict([text]).probabilities for text in texts])
    for seed in (1, 2):
        order = list(range(len(texts)))
        random.Random(seed).shuffle(order)
        for size in (8, 64):
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                together = classifier.predict([texts[i] for i in chunk]).probabilities
                assert np.abs(together - alone[chunk]).max() <= 1e-6
