/**
 * What both loaders take away before any handler code runs (this file runs inside the
 * sandbox and imports nothing from the runner).
 * @module
 */

/**
 * No persistent web storage: Deno keys localStorage and the Cache API by the main module,
 * which is always a loader, so every function would share one store on disk (and Cache API
 * writes need no write grant). Nothing else reaches them once these globals are gone.
 */
export function removeWebStorage(): void {
  for (
    const name of ["localStorage", "sessionStorage", "caches", "CacheStorage", "Cache", "Storage"]
  ) {
    Reflect.deleteProperty(globalThis, name);
  }
}

/**
 * An exit a handler cannot delay. `Deno.exit` runs the `unload` listeners first unless Deno's
 * "unload dispatched" flag is set, and a handler's listener could keep the process alive there
 * for ever. The flag is defined here so that the handler cannot redefine it; `leave` sets it
 * (the runner is gone: exit at once, there is no one left to tell why), a normal exit still
 * runs the listeners.
 *
 * @param exit `Deno.exit`, captured before any handler code runs.
 */
export function guardExit(exit: (code: number) => never): (code: number) => never {
  let leaving = false;
  let unloadDispatched = false;
  Object.defineProperty(globalThis, Symbol.for("Deno.isUnloadDispatched"), {
    get: () => leaving || unloadDispatched,
    set: (value) => unloadDispatched = Boolean(value),
    configurable: false,
  });
  return (code: number): never => {
    leaving = true;
    return exit(code);
  };
}
