"""Training (TensorFlow; the train stage and the training benchmarks):
- settings:     the train params, checked before TensorFlow loads
- step:         learning-rate schedule, optimizer, precision, the static-shape training step
- checkpoints:  the resume state, saved after every epoch as one unit
- history:      an epoch's row of the history, its printed line, metrics/train.json's summary
- live:         DVCLive's live metrics, epoch by epoch
- distribution: tf.distribute strategies (mirrored, multi_worker) and the chief's hand-over
- cluster:      TF_CONFIG, and the watchdog that keeps a multi-worker start-up deadline
"""
