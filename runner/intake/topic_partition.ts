/**
 * A partition of a topic, as one value: the unit Kafka orders, assigns and commits.
 * @module
 */

/** A partition of a topic. */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/** `topic/partition`, as logs and errors name it. */
export function formatTopicPartition({ topic, partition }: TopicPartition): string {
  return `${topic}/${partition}`;
}

/** A map keyed by partition (by value: two objects naming the same partition are one key). */
export class PartitionMap<V> {
  readonly #topics = new Map<string, Map<number, V>>();

  get(tp: TopicPartition): V | undefined {
    return this.#topics.get(tp.topic)?.get(tp.partition);
  }

  set(tp: TopicPartition, value: V): void {
    let partitions = this.#topics.get(tp.topic);
    if (!partitions) this.#topics.set(tp.topic, partitions = new Map());
    partitions.set(tp.partition, value);
  }

  has(tp: TopicPartition): boolean {
    return this.#topics.get(tp.topic)?.has(tp.partition) ?? false;
  }

  delete(tp: TopicPartition): boolean {
    const partitions = this.#topics.get(tp.topic);
    if (!partitions?.delete(tp.partition)) return false;
    if (partitions.size === 0) this.#topics.delete(tp.topic);
    return true;
  }

  /** Every entry, with its partition. */
  *entries(): IterableIterator<[TopicPartition, V]> {
    for (const [topic, partitions] of this.#topics) {
      for (const [partition, value] of partitions) yield [{ topic, partition }, value];
    }
  }
}
