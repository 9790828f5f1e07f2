/**
 * The per-task cost of a payload schema check (issue 14: well under 0.1 ms for a 1 KB
 * payload): `deno run bench/schema_bench.ts`. It times `PayloadSchemas.check` on the parsed
 * payload, as the decoder calls it, for a matching payload and for one that is rejected.
 * @module
 */
import { parseFunctionConfig } from "../runner/function_config.ts";
import { PayloadSchemas } from "../runner/intake/payload_schema.ts";

const SCHEMA = {
  type: "object",
  required: ["to", "subject", "lines"],
  additionalProperties: false,
  properties: {
    to: { type: "string", maxLength: 200 },
    subject: { type: "string" },
    priority: { enum: ["low", "normal", "high"] },
    lines: {
      type: "array",
      items: {
        type: "object",
        required: ["sku", "qty"],
        properties: { sku: { type: "string" }, qty: { type: "integer", minimum: 1 } },
      },
    },
  },
};

const lines = Array.from({ length: 36 }, (_, i) => ({ sku: `SKU-${1000 + i}`, qty: i + 1 }));
const good = { to: "ann@example.com", subject: "Your order", priority: "normal", lines };
const bytes = JSON.stringify(good).length;
const bad = { ...good, lines: [...lines.slice(0, 35), { sku: "x", qty: "two" }] };

const schemas = new PayloadSchemas(
  parseFunctionConfig({ functions: { mail: { schema: SCHEMA } } }, "bench.json"),
);

function timeIt(label: string, payload: unknown, rejects: boolean): void {
  const n = 200_000;
  for (let i = 0; i < 20_000; i++) run(payload, rejects); // warm up the JIT
  const start = performance.now();
  for (let i = 0; i < n; i++) run(payload, rejects);
  const perTaskUs = (performance.now() - start) / n * 1000;
  console.log(`${label.padEnd(26)} ${perTaskUs.toFixed(2)} µs per task (${n} checks)`);
}

function run(payload: unknown, rejects: boolean): void {
  try {
    schemas.check("mail", payload);
    if (rejects) throw new Error("expected a rejection");
  } catch (error) {
    if (!rejects) throw error;
  }
}

console.log(`payload: ${bytes} bytes of JSON, ${lines.length} lines`);
timeIt("matching payload", good, false);
timeIt("rejected payload", bad, true);
const parseStart = performance.now();
const text = JSON.stringify(good);
for (let i = 0; i < 100_000; i++) JSON.parse(text);
console.log(
  `${"JSON.parse, for scale".padEnd(26)} ${((performance.now() - parseStart) / 100).toFixed(2)} µs`,
);
