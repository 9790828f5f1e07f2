/**
 * The `topics` admin command: topics with their partitions, leaders, replicas and log bounds
 * (the PHP notes' "topic list from metadata", plus the offsets).
 * @module
 */
import type { Admin } from "kafkajs";
import { partitionBounds, requireTopic } from "./log_bounds.ts";

/** A broker as the cluster advertises it. */
export interface BrokerInfo {
  /** Node id (`node.id`). */
  nodeId: number;
  /** Advertised host (what clients connect to after the first metadata request). */
  host: string;
  /** Advertised port. */
  port: number;
  /** True for the node that is the active controller. */
  controller: boolean;
}

/** One partition of a topic. */
export interface PartitionInfo {
  /** Partition number. */
  partition: number;
  /** Node id of the leader, or -1 when the partition has none (offline). */
  leader: number;
  /** Node ids holding a replica. */
  replicas: number[];
  /** Node ids of the in-sync replicas. */
  isr: number[];
  /** Node ids of replicas that are offline. */
  offline: number[];
  /** First offset in the log. */
  low: number;
  /** End offset: the offset the next message will get. */
  high: number;
}

/** One topic and its partitions. */
export interface TopicInfo {
  /** Topic name. */
  topic: string;
  /** True for Kafka's own topics (`__consumer_offsets`, `__transaction_state`, ...). */
  internal: boolean;
  /** Partitions, by number. */
  partitions: PartitionInfo[];
}

/** What {@link listTopics} returns. */
export interface TopicsReport {
  /** Cluster id. */
  clusterId: string;
  /** The brokers of the cluster, by node id. */
  brokers: BrokerInfo[];
  /** The topics, by name. */
  topics: TopicInfo[];
}

/** Options of {@link listTopics}. */
export interface ListTopicsOptions {
  /** Only these topics (each must exist). @default every topic */
  topics?: string[];
  /** Include Kafka's internal topics (names starting with `__`). @default false */
  includeInternal?: boolean;
}

/**
 * Kafka's own topics. kafkajs does not pass on the metadata's `is_internal` flag, so this uses
 * the naming convention that every internal topic follows (`__consumer_offsets`, ...).
 */
function isInternal(topic: string): boolean {
  return topic.startsWith("__");
}

/**
 * List topics with partitions, leaders, replicas/ISR and start/end offsets.
 *
 * @throws {UnknownTopicError} when a topic named in `options.topics` does not exist.
 * @example
 * ```ts
 * const { topics } = await listTopics(admin, { topics: ["async_task"] });
 * console.log(topics[0].partitions.map((p) => p.high));
 * ```
 */
export async function listTopics(
  admin: Admin,
  options: ListTopicsOptions = {},
): Promise<TopicsReport> {
  const includeInternal = options.includeInternal ?? false;
  let names: string[];
  if (options.topics !== undefined) {
    for (const topic of options.topics) await requireTopic(admin, topic);
    names = [...new Set(options.topics)];
  } else {
    names = (await admin.listTopics()).filter((t) => includeInternal || !isInternal(t));
  }
  names.sort();
  const cluster = await admin.describeCluster();
  const brokers = cluster.brokers
    .map((b) => ({ ...b, controller: b.nodeId === cluster.controller }))
    .sort((a, b) => a.nodeId - b.nodeId);
  if (names.length === 0) return { clusterId: cluster.clusterId, brokers, topics: [] };

  const { topics: metadata } = await admin.fetchTopicMetadata({ topics: names });
  const topics: TopicInfo[] = [];
  for (const { name, partitions } of metadata) {
    const bounds = await partitionBounds(admin, name, { known: true });
    const byPartition = new Map(bounds.map((b) => [b.partition, b]));
    topics.push({
      topic: name,
      internal: isInternal(name),
      partitions: partitions
        .map((p) => {
          const bound = byPartition.get(p.partitionId);
          // Both answers come from the same leaders a moment apart; a gap means the topic
          // changed in between (partitions added): say so rather than invent offsets.
          if (bound === undefined) {
            throw new Error(`${name}/${p.partitionId} has no offsets yet: the topic is changing`);
          }
          return {
            partition: p.partitionId,
            leader: p.leader,
            replicas: p.replicas,
            isr: p.isr,
            offline: p.offlineReplicas ?? [],
            low: bound.low,
            high: bound.high,
          };
        })
        .sort((a, b) => a.partition - b.partition),
    });
  }
  topics.sort((a, b) => a.topic.localeCompare(b.topic));
  return { clusterId: cluster.clusterId, brokers, topics };
}
