/**
 * The 3-broker KRaft test cluster (`BROKER_MODE=cluster bash broker/kafka.sh start`, node i on
 * 127.0.0.1:29400+10*(i-1), replication factor 3, min.insync.replicas=2), and what a fault test
 * needs: kill -9 a node, start it again, find a partition's leader and a group's coordinator.
 */
import type { Admin } from "kafkajs";
import { ROOT } from "./harness.ts";

/** Client port of node 1; node i listens on CLUSTER_PORT + 10 * (i - 1). */
export const CLUSTER_PORT = 29400;

/** Bootstrap list of the three nodes. */
export const CLUSTER_BROKERS = [0, 1, 2].map((i) => `127.0.0.1:${CLUSTER_PORT + 10 * i}`);

async function kafkaSh(command: string, node?: number): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}broker/kafka.sh`, command],
    env: {
      BROKER_MODE: "cluster",
      BROKER_PORT: String(CLUSTER_PORT),
      BROKER_CDS: "0",
      ...(node ? { BROKER_NODE: String(node) } : {}),
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

/** Start the cluster unless it runs; resolves to a function that stops it if we started it. */
export async function startCluster(): Promise<() => Promise<void>> {
  const running = (await kafkaSh("status")).code === 0;
  if (!running) {
    const started = await kafkaSh("start");
    if (started.code !== 0) throw new Error(`the cluster did not start:\n${started.output}`);
  }
  return async () => {
    if (!running) await kafkaSh("stop");
  };
}

/** The pid of node `id` (1..3). */
export async function nodePid(id: number): Promise<number> {
  const { output } = await kafkaSh("status", id);
  const pid = /running pid=(\d+)/.exec(output)?.[1];
  if (!pid) throw new Error(`node ${id} is not running: ${output}`);
  return Number(pid);
}

/** kill -9 node `id`. */
export async function killNode(id: number): Promise<void> {
  Deno.kill(await nodePid(id), "SIGKILL");
}

/** Start node `id` again (after {@link killNode}). */
export async function restartNode(id: number): Promise<void> {
  const started = await kafkaSh("start", id);
  if (started.code !== 0) throw new Error(`node ${id} did not restart:\n${started.output}`);
}

/** Java's String.hashCode, which Kafka uses to place a group on a __consumer_offsets partition. */
function javaHash(text: string): number {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (Math.imul(31, h) + text.charCodeAt(i)) | 0;
  return h;
}

/** The node leading `partition` of `topic`. */
export async function leaderOf(admin: Admin, topic: string, partition: number): Promise<number> {
  const { topics: [meta] } = await admin.fetchTopicMetadata({ topics: [topic] });
  return meta.partitions.find((p) => p.partitionId === partition)!.leader;
}

/** The node coordinating `groupId`: the leader of its __consumer_offsets partition. */
export async function coordinatorOf(admin: Admin, groupId: string): Promise<number> {
  const { topics: [meta] } = await admin.fetchTopicMetadata({ topics: ["__consumer_offsets"] });
  const partition = Math.abs(javaHash(groupId)) % meta.partitions.length;
  return await leaderOf(admin, "__consumer_offsets", partition);
}
