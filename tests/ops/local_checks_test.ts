/**
 * The doctor's local checks without a broker: a functions folder and a functions.json in a
 * temporary folder.
 */
import { localChecks } from "../../ops/doctor/local_checks.ts";
import { assertEquals } from "../helpers/assert.ts";

Deno.test("doctor warns about grants that amount to full access", async () => {
  const dir = await Deno.makeTempDir({ prefix: "task-runner-doctor-" });
  try {
    await Deno.mkdir(`${dir}/functions`);
    for (const name of ["wide", "narrow"]) {
      await Deno.writeTextFile(`${dir}/functions/${name}.ts`, "export default () => {};\n");
    }
    await Deno.writeTextFile(
      `${dir}/functions.json`,
      JSON.stringify({
        functions: {
          wide: {
            allowRead: ["/"],
            allowWrite: ["/etc"],
            allowRun: ["/bin/bash", "python3"],
            env: { NODE_OPTIONS: "--require x" },
            allowLoaderEnv: ["NODE_OPTIONS"],
          },
          narrow: { allowRead: ["/srv/data"], allowRun: ["convert"] },
        },
      }),
    );
    const checks = await localChecks({
      functionsDir: `${dir}/functions`,
      functionsConfig: `${dir}/functions.json`,
    });
    const warnings = checks
      .filter((c) => c.name === "functions-config" && c.status === "warn")
      .map((c) => c.message.replace(`${dir}/functions.json`, "F"));
    assertEquals(warnings, [
      'F: "wide" may read every file (allowRead "/")',
      'F: "wide" may write a system folder (allowWrite "/etc")',
      'F: "wide" may run a shell or interpreter, hence any program (allowRun "/bin/bash", "python3")',
      'F: "wide" sets variables that change how a process loads (allowLoaderEnv "NODE_OPTIONS")',
    ]);
    assertEquals(
      checks.every((c) => c.status !== "warn" || c.fix),
      true,
      "every warning has a fix",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
