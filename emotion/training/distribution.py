"""Training on several devices or hosts with tf.distribute (train.distribution).

- none: no strategy (TensorFlow's default one): one device, the code path of a plain run.
- mirrored: MirroredStrategy over all local GPUs, or over the local CPU devices.
- multi_worker: MultiWorkerMirroredStrategy over the hosts listed in TF_CONFIG; every host
  runs the train stage, the chief (task 0, or the task of type "chief") writes the outputs.

train.batch_size stays the global batch: every worker builds the same batches and each replica
takes its slice of each one (see emotion.training). Two environment variables, not params
(they change how a run is carried out, not its results):
- EMOTION_CPU_DEVICES=N splits the CPU into N logical devices for `mirrored` and
  `multi_worker`: how tests and docs try several devices on a machine without GPUs;
- EMOTION_WORKER_TIMEOUT (seconds, default 300): how long a multi_worker run waits for the
  other hosts to start, and for any one collective operation, before it ends with an error
  (see emotion.training.cluster).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import tensorflow as tf

from emotion.errors import PipelineError, first_line
from emotion.training.cluster import (
    cluster_spec,
    start_deadline,
    stop_deadline,
    worker_timeout,
)

CPU_DEVICES_VARIABLE = "EMOTION_CPU_DEVICES"
# What a collective operation raises when a peer has died, hangs or cannot be reached.
LOST_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                    tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.UnknownError,
                    tf.errors.InternalError)


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy of train.distribution. Call it before anything else uses
    TensorFlow's devices: EMOTION_CPU_DEVICES can only split the CPU until then. For
    multi_worker it waits for every host in TF_CONFIG (see worker_deadline)."""
    if distribution == "none":
        return tf.distribute.get_strategy()
    split_cpu(cpu_device_count())
    if distribution == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        # NCCL (the GPU default) does not run on CPUs; reduce through one device there.
        return tf.distribute.MirroredStrategy(
            [device.name for device in devices],
            cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice())
    cluster, task_type, index = cluster_spec()  # a clear error for a bad TF_CONFIG
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout())
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except tf.errors.OpError as error:  # e.g. the port is taken
        raise PipelineError(
            f"train.distribution multi_worker: cannot start this host's server at "
            f"{cluster[task_type][index]} (TF_CONFIG task {task_type} {index}): "
            f"{first_line(error)}") from None


def cpu_device_count() -> int:
    """EMOTION_CPU_DEVICES (1 when unset)."""
    value = os.environ.get(CPU_DEVICES_VARIABLE, "1")
    if not value.isdigit() or int(value) < 1:
        raise PipelineError(f"environment variable {CPU_DEVICES_VARIABLE} must be a positive "
                            f"integer, got {value!r}")
    return int(value)


def split_cpu(count: int) -> None:
    """Make the CPU appear as `count` logical devices (before TensorFlow initialises them)."""
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs: always, but for the non-chief workers of a
    multi_worker run."""
    return strategy.extended.should_checkpoint


def topology(strategy: tf.distribute.Strategy, distribution: str) -> dict[str, int]:
    """Where training runs, as the weights depend on it: replicas in sync and hosts."""
    hosts = sum(map(len, cluster_spec()[0].values())) if distribution == "multi_worker" else 1
    return {"replicas": strategy.num_replicas_in_sync, "hosts": hosts}


def describe(strategy: tf.distribute.Strategy, distribution: str) -> str:
    """One line on where training runs, e.g. "mirrored: 2 replicas (CPU:0, CPU:1)"."""
    replicas = strategy.num_replicas_in_sync
    if distribution == "multi_worker":
        cluster, task_type, index = cluster_spec()
        role = "the chief, writes the outputs" if is_chief(strategy) else "writes nothing"
        return (f"multi_worker: {replicas} replicas on {sum(map(len, cluster.values()))} "
                f"hosts; this is {task_type} {index} ({role})")
    devices = ", ".join(name.split("device:")[-1]
                        for name in strategy.extended.worker_devices)
    return f"{distribution}: {replicas} replica{'s' * (replicas > 1)} ({devices})"


@contextmanager
def worker_deadline(distribution: str) -> Iterator[None]:
    """For multi_worker: the block (connecting to every host, the first collective
    operations) must end within the worker timeout, or a watchdog process ends this one with
    a one-line error (see emotion.training.cluster; nothing is written by then)."""
    if distribution != "multi_worker":
        yield
        return
    cluster_spec()  # a bad TF_CONFIG is a one-line error before anything starts
    watchdog = start_deadline(worker_timeout())
    try:
        yield
    finally:
        stop_deadline(watchdog)


def gather_from_replicas(strategy: tf.distribute.Strategy, values: Sequence[int]) -> list[list]:
    """Each replica's copy of `values` (int64), in replica order: a collective operation,
    so every worker must call it at the same point."""
    local = tf.constant(values, tf.int64)[tf.newaxis]

    @tf.function
    def gather():
        return strategy.run(
            lambda: tf.distribute.get_replica_context().all_gather(local, axis=0))

    return strategy.experimental_local_results(gather())[0].numpy().tolist()


def join_workers(strategy: tf.distribute.Strategy, fingerprint: str,
                 completed_epochs: int) -> int:
    """Check that every worker of a multi_worker run trains the same thing (the same run
    fingerprint) and return the chief's number of completed epochs, where all start."""
    rows = gather_from_replicas(strategy, [int(fingerprint[:15], 16), completed_epochs])
    if any(row[0] != rows[0][0] for row in rows):
        raise PipelineError("train.distribution multi_worker: the workers' params, code, data "
                            "or frameworks differ from the chief's (run fingerprints differ): "
                            "give every host the same commit and `dvc pull`")
    return rows[0][1]


def broadcast_from_chief(strategy: tf.distribute.Strategy, variables: Sequence[Any]) -> None:
    """Give every replica the first replica's (the chief's) value of each variable, bit for
    bit: how a resumed multi_worker run hands the chief's checkpoint to the other hosts.
    One all_gather per dtype (of all its variables, flattened); a collective operation, like
    gather_from_replicas."""
    by_dtype: dict[Any, list[int]] = {}
    for position, variable in enumerate(variables):
        by_dtype.setdefault(variable.dtype, []).append(position)

    def first_replicas_values():
        context = tf.distribute.get_replica_context()
        values = [None] * len(variables)
        for positions in by_dtype.values():
            group = [variables[position] for position in positions]
            flat = tf.concat([tf.reshape(variable.read_value(), [-1]) for variable in group], 0)
            first = context.all_gather(flat[tf.newaxis], axis=0)[0]
            pieces = tf.split(first, [variable.shape.num_elements() for variable in group])
            for position, variable, piece in zip(positions, group, pieces):
                values[position] = tf.reshape(piece, variable.shape)
        return values

    @tf.function
    def broadcast():
        values = strategy.run(first_replicas_values)
        for variable, value in zip(variables, values):
            variable.assign(strategy.experimental_local_results(value)[0])

    broadcast()


def lost_peer(error: tf.errors.OpError) -> PipelineError:
    """The one-line error for a collective operation that failed because another host died,
    hung or became unreachable, naming that host where TensorFlow's message does."""
    match = re.search(r"/job:(\w+)/replica:\d+/task:(\d+)", str(error))
    peer = ""
    if match:
        cluster, _, _ = cluster_spec()
        kind, index = match[1], int(match[2])
        addresses = cluster.get(kind, [])
        address = addresses[index] if index < len(addresses) else "?"
        peer = f" with {kind} {index} ({address})"
    return PipelineError(
        f"train.distribution multi_worker: lost contact{peer} ({type(error).__name__}: "
        f"{_reason(error)}); the chief keeps the last completed epoch: start the train stage on "
        "every host again to resume")


def _reason(error: tf.errors.OpError) -> str:
    """The most telling line of a collective error: gRPC's message if there is one."""
    match = re.search(r'grpc_message:"([^"]*)"', str(error))
    return match[1] if match else first_line(error)
