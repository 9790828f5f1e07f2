// Prints when it started, next to the message's produce time: produce → handler start latency.
// The payload's `i` (if any) comes last, so that warm-up tasks can be told apart.
export default function (task: { timestamp: string; payload: { i?: number } }) {
  console.log(`stamp ${Date.now()} ${Date.parse(task.timestamp)} ${task.payload?.i ?? 0}`);
}
