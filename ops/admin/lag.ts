/**
 * The `lag` admin command: how far a consumer group is behind on a topic, per partition.
 *
 * The committed offset is the next offset the group will read (the runner commits the offset
 * after each batch it starts), so lag = end offset - committed offset: the messages written and
 * not yet started. Reading it never joins the group.
 * @module
 */
import { type Admin, AssignerProtocol } from "kafkajs";
import { partitionBounds, requireTopic, toNumber } from "./log_bounds.ts";

/** One member of the group. */
export interface GroupMemberInfo {
  /** Member id given by the coordinator. */
  memberId: string;
  /** Client id the member connected with. */
  clientId: string;
  /** Host the member connected from, as the broker saw it. */
  clientHost: string;
  /** Partitions of the topic assigned to this member. */
  partitions: number[];
}

/** The group's position in one partition. */
export interface PartitionLag {
  /** Partition number. */
  partition: number;
  /** Next offset the group will read, or null when the group never committed one here. */
  committed: number | null;
  /** First offset in the log. */
  low: number;
  /** End offset: the offset the next message will get. */
  high: number;
  /** `high - committed`, or null without a committed offset. */
  lag: number | null;
  /** Client id of the member that holds the partition now, or null when nobody does. */
  owner: string | null;
}

/** What {@link groupLag} returns. */
export interface GroupLag {
  /** Group id. */
  groupId: string;
  /** Topic name. */
  topic: string;
  /**
   * Group state from the coordinator: `Stable` (members consuming), `Empty` (no members, offsets
   * kept), `Dead` (unknown to the coordinator), or a rebalance in progress.
   */
  state: string;
  /** Members, with their partitions of this topic. */
  members: GroupMemberInfo[];
  /** Per partition, by number. */
  partitions: PartitionLag[];
  /** Sums over the partitions. */
  totals: {
    /** Sum of the end offsets. */
    high: number;
    /** Sum of the lags of the partitions with a committed offset. */
    lag: number;
    /** Partitions without a committed offset. */
    uncommitted: number;
    /** Messages in those partitions (what a group starting at the log start would read). */
    uncommittedMessages: number;
  };
}

/** Which group and topic. */
export interface GroupLagQuery {
  /** Consumer group id. */
  groupId: string;
  /** Topic name. */
  topic: string;
  /**
   * The caller knows the topic exists (it asked before): no topic list, which is metadata for
   * every topic of the cluster. @default false
   */
  known?: boolean;
}

/** Decode a member's assignment; a member that has not synced yet has an empty one. */
function assignedPartitions(buffer: Uint8Array, topic: string): number[] {
  if (buffer.length === 0) return [];
  const decoded = AssignerProtocol.MemberAssignment.decode(buffer as never);
  return [...(decoded?.assignment[topic] ?? [])].sort((a, b) => a - b);
}

/**
 * The group's state, members and, per partition of `query.topic`, committed offset, end offset
 * and lag, plus totals.
 *
 * @throws {UnknownTopicError} when the topic does not exist.
 * @example
 * ```ts
 * const { totals } = await groupLag(admin, { groupId: "task-runner", topic: "async_task" });
 * ```
 */
export async function groupLag(admin: Admin, query: GroupLagQuery): Promise<GroupLag> {
  const { groupId, topic } = query;
  if (!query.known) await requireTopic(admin, topic);
  const { groups: [group] } = await admin.describeGroups([groupId]);
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  // Asked after the committed offsets, so that a commit in between cannot make lag negative.
  const bounds = await partitionBounds(admin, topic, { known: true });

  const members = (group?.members ?? []).map((m) => ({
    memberId: m.memberId,
    clientId: m.clientId,
    clientHost: m.clientHost,
    partitions: assignedPartitions(m.memberAssignment, topic),
  }));
  const owners = new Map<number, string>();
  for (const m of members) for (const p of m.partitions) owners.set(p, m.clientId);
  const offsets = new Map(
    (committed?.partitions ?? []).map((p) => [p.partition, toNumber(p.offset, "committed offset")]),
  );

  const partitions = bounds.map(({ partition, low, high }) => {
    const at = offsets.get(partition) ?? -1;
    const has = at >= 0; // kafkajs gives -1 for "no committed offset"
    return {
      partition,
      committed: has ? at : null,
      low,
      high,
      lag: has ? Math.max(0, high - at) : null,
      owner: owners.get(partition) ?? null,
    };
  });
  const totals = { high: 0, lag: 0, uncommitted: 0, uncommittedMessages: 0 };
  for (const p of partitions) {
    totals.high += p.high;
    if (p.lag === null) {
      totals.uncommitted++;
      totals.uncommittedMessages += p.high - p.low;
    } else {
      totals.lag += p.lag;
    }
  }
  return { groupId, topic, state: group?.state ?? "Dead", members, partitions, totals };
}
