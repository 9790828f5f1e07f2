// Prints when it started, next to the message's produce time: produce → handler start latency.
export default function (task: { timestamp: string }) {
  console.log(`stamp ${Date.now()} ${Date.parse(task.timestamp)}`);
}
