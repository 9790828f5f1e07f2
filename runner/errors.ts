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
