"""Smoke test on the real dataset and model, from an offline Hub cache laid beside the checkout.

Skipped where no such cache exists (e.g. a machine with plain Hub access and no cache); in CI,
which has one beside its clone, a missing cache fails."""

import os

import datasets
import pytest
import tensorflow as tf
import tf_keras
from conftest import HARD_TEXTS, ROOT, require, run_stage, write_params

HUB_CACHE = ROOT.parent / "shared" / "hf-cache"
REAL_LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2"
REVISION = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"

pytestmark = pytest.mark.pipeline  # the real model: a training step, 20,000 texts


@pytest.fixture
def offline_hub(monkeypatch):
    require((HUB_CACHE / "README.md").exists(), f"the offline Hub cache at {HUB_CACHE}")
    monkeypatch.setenv("HF_HUB_CACHE", str(HUB_CACHE))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_download_stage_gets_the_real_dataset(project, offline_hub):
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    write_params(project, params)
    result = run_stage("download", project, HF_HUB_CACHE=os.environ["HF_HUB_CACHE"])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {}
    for split in ("train", "validation", "test"):
        data = datasets.Dataset.from_parquet(str(project / f"data/raw/{split}.parquet"))
        assert data.features["label"].names == REAL_LABELS
        rows[split] = data.num_rows
    assert rows == {"train": 16000, "validation": 2000, "test": 2000}


def test_real_tokenizer_and_model_load_and_train_one_step(offline_hub):
    from emotion.data import bucket_batches, load_tokenizer
    from emotion.model import new_classifier, seed_everything
    from emotion.training.step import make_train_step

    seed_everything(0)
    tokenizer = load_tokenizer(CHECKPOINT, REVISION)
    model = new_classifier(CHECKPOINT, REVISION, REAL_LABELS, pooling="cls",
                           classifier_dropout=0.0, classifier_init="glorot_uniform", seed=0)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    ids = tokenizer(["i feel so happy today", "i am scared of the dark"])["input_ids"]
    batches = bucket_batches(ids, [1, 4], batch_size=2, bucket_lengths=[16, 128],
                             pad_id=tokenizer.pad_token_id)
    optimizer = tf_keras.optimizers.Adam(1e-5)
    optimizer.build(model.trainable_variables)
    before = model.classifier.kernel.numpy().copy()
    features, labels = next(iter(batches))
    loss, correct = make_train_step(model, optimizer)(features, labels)
    assert features["input_ids"].shape == (2, 16)
    assert tf.math.is_finite(loss) and 0 <= int(correct) <= 2
    assert not (model.classifier.kernel.numpy() == before).all()


def test_in_graph_tokenizer_matches_transformers_on_every_real_text(offline_hub):
    """The SavedModel's tokenizer (tensorflow-text) gives the transformers tokenizer's ids on
    all 20,000 texts of the real dataset and on the hard cases."""
    from huggingface_hub import snapshot_download

    from emotion.data import encode, load_tokenizer
    from emotion.packaging.saved_model import GraphTokenizer

    tokenizer = load_tokenizer(CHECKPOINT, REVISION)
    graph = GraphTokenizer(tokenizer, 128)
    folder = snapshot_download("dair-ai/emotion", repo_type="dataset",
                               revision="c01a061e1e083f4f6329bae39a165d6f0a39cc1f")
    texts = [text for split in ("train", "validation", "test") for text in
             datasets.load_dataset(folder, "split", split=split)["text"]]
    texts += HARD_TEXTS + [" ".join(["wonderful"] * 200)]
    assert len(texts) > 20000
    mismatches = []
    for start in range(0, len(texts), 2000):
        batch = texts[start:start + 2000]
        out = graph(tf.constant(batch))
        got = [row[mask == 1].tolist() for row, mask in
               zip(out["input_ids"].numpy(), out["attention_mask"].numpy())]
        mismatches += [text for text, a, b in zip(batch, encode(tokenizer, batch, 128), got)
                       if a != b]
    assert mismatches == []
