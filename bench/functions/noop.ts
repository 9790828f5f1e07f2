// The no-op handler: what process-per-task costs with no work at all.
export default function () {}
