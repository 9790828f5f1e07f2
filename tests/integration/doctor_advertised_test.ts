/**
 * doctor's advertised.listeners fix line names the address that answered, also when the
 * broker advertises another *port* than it listens on (it used to pair the reachable host
 * with the advertised port: 127.0.0.1:29319 for a broker listening on 29310).
 */
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import { ROOT } from "../helpers/harness.ts";
import { runAdmin } from "../helpers/cli_capture.ts";

const PORT = 29310;
const ADVERTISED = 29319;

async function kafkaSh(command: string): Promise<number> {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}broker/kafka.sh`, command],
    env: {
      BROKER_PORT: String(PORT),
      BROKER_ADVERTISED_PORT: String(ADVERTISED),
      BROKER_CDS: "0",
    },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return out.code;
}

Deno.test({
  name: "doctor: an advertised port nothing listens on → advertise the address that answered",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  assertEquals(await kafkaSh("start"), 0);
  try {
    const { code, stdout, stderr } = await runAdmin("doctor", [
      "--brokers",
      `127.0.0.1:${PORT}`,
      "--connect-timeout-ms",
      "1000",
    ]);
    assertEquals(code, 1);
    assertEquals(stderr, "");
    assertMatch(
      stdout,
      new RegExp(`^fail advertised .*advertises 127\\.0\\.0\\.1:${ADVERTISED}`, "m"),
    );
    assertMatch(
      stdout,
      new RegExp(
        `fix: on the broker set advertised\\.listeners=PLAINTEXT://127\\.0\\.0\\.1:${PORT} `,
      ),
    );
  } finally {
    await kafkaSh("stop");
  }
});
