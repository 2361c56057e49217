"""Stage tokenize: the checkpoint's fast tokenizer, batched, truncated, unpadded.

Writes data/tokenized/{train,validation,test}.parquet with columns input_ids (ragged
list of token ids, [CLS] ... [SEP]) and label. Padding happens per batch at training time.
"""

from emotion.process import start_stage

if __name__ == "__main__":  # before anything imports datasets
    start_stage()

import time

from emotion.data import encode, load_tokenizer, read_split
from emotion.errors import PipelineError, exit_on_error
from emotion.files import atomic_output
from emotion.params import load_params, model_source, positive
from emotion.paths import RAW_DIR, SPLITS, TOKENIZED_DIR


def main() -> None:
    checkpoint, revision = model_source()
    max_length = positive(load_params("model"), "model", "max_length", int)
    tokenizer = load_tokenizer(checkpoint, revision)
    if max_length > tokenizer.model_max_length:
        raise PipelineError(
            f"param model.max_length: {max_length} exceeds the model's limit "
            f"{tokenizer.model_max_length}"
        )

    def encode_batch(batch):
        return {"input_ids": encode(tokenizer, batch["text"], max_length)}

    start = time.perf_counter()
    with atomic_output(TOKENIZED_DIR) as out:
        out.mkdir()
        for split in SPLITS:
            raw = read_split(RAW_DIR, split)
            tokens = raw.map(encode_batch, batched=True, batch_size=1000, remove_columns=["text"],
                             keep_in_memory=True, load_from_cache_file=False)
            tokens = tokens.select_columns(["input_ids", "label"])
            tokens.to_parquet(str(out / f"{split}.parquet"))
            lengths = [len(ids) for ids in tokens["input_ids"]]
            truncated = sum(length == max_length for length in lengths)
            print(f"{split}: {len(lengths)} texts, mean {sum(lengths) / len(lengths):.1f} tokens, "
                  f"{truncated} at the {max_length}-token cap")
    print(f"tokenized in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    exit_on_error(main)
