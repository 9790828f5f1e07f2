/**
 * The few figures every bench prints: percentiles of sorted samples, fixed-point numbers.
 * @module
 */

/** The `p`th percentile (0-100) of ascending `sorted` samples (nearest rank); NaN if none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** `n` with `digits` decimals ("-" for null). */
export function fmt(n: number | null, digits = 1): string {
  return n === null ? "-" : n.toFixed(digits);
}
