/**
 * Error types of task-runner. Each says what went wrong and what to do about it.
 * @module
 */

/** Invalid configuration: a flag, environment variable or config file entry. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The operator's functions config file (per-function grants) is invalid. */
export class FunctionsConfigError extends Error {
  override name = "FunctionsConfigError";
}

/** A task was refused before any handler ran (bad header, unknown handler, bad payload). */
export class TaskRejectedError extends Error {
  override name = "TaskRejectedError";
}

/** The local development broker could not be started or reached. */
export class LocalBrokerError extends Error {
  override name = "LocalBrokerError";
}

/** A sandboxed child process could not be spawned. */
export class SpawnError extends Error {
  override name = "SpawnError";
}

/** An admin command named a topic or partition that the cluster does not have. */
export class UnknownTopicError extends Error {
  override name = "UnknownTopicError";
}

/** An offset outside a partition's log: before its first offset or at/after its end. */
export class OffsetOutOfRangeError extends Error {
  override name = "OffsetOutOfRangeError";
}

/** The broker did not deliver what an admin command asked for within its time limit. */
export class AdminTimeoutError extends Error {
  override name = "AdminTimeoutError";
}

/** `replay` could not produce every selected message; the message says how many it did. */
export class ReplayProduceError extends Error {
  override name = "ReplayProduceError";
}

/**
 * The brokers refused this client's security settings (TLS, SASL, protocol), or a secret
 * could not be read. The message names the setting to change; it never holds a secret.
 */
export class KafkaSecurityError extends Error {
  override name = "KafkaSecurityError";
}

/**
 * A partition was revoked (or its state read again after a failed commit) while a commit for
 * tasks about to start was on its way: they do not start, and the partition's next owner (or
 * the next fetch) reads them again.
 */
export class PartitionGoneError extends Error {
  override name = "PartitionGoneError";
  constructor(tp: { topic: string; partition: number }) {
    super(
      `partition ${tp.topic}/${tp.partition} was revoked or reset before its commit; ` +
        "its tasks that had not started are read again",
    );
  }
}
