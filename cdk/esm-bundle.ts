/**
 * Gives an ESM bundle the `require` its CommonJS dependencies call: without it, a bundle with
 * aws-xray-sdk-core (under the Powertools Tracer) fails at import with 'Dynamic require of
 * "util" is not supported'. The alias keeps clear of our own createRequire imports.
 */
export const ESM_REQUIRE_SHIM =
  "import { createRequire as __bundleCreateRequire } from 'node:module'; const require = __bundleCreateRequire(import.meta.url);";
