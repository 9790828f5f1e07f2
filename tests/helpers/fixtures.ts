/** Where the test handlers are: one fixture per failure mode. @module */
import { fileURLToPath } from "node:url";

/** The fixture functions folder, with a trailing slash (`${FIXTURES}echo.ts`). */
export const FIXTURES = fileURLToPath(new URL("../fixtures/functions/", import.meta.url));
