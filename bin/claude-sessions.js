#!/usr/bin/env node
// @ts-check
// Runs the CLI from a bundle of the TypeScript sources, built on first use (bin/cli-bundle.js),
// so `npx claude-sessions` works right after `npm ci` and starts fast.
import { cliEntries } from './cli-bundle.js';

// The SDK only talks to the local dynalite here; its Node 20 end-of-support notice is noise.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const argv = process.argv.slice(2);
/** @type {{ main: typeof import('../lib/cli/main.js').main }} */
const { main } = await import((await cliEntries()).main);

let interrupted = false;
const code = await main(argv, {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  cwd: process.cwd(),
  stdin: process.stdin,
  onInterrupt: (stop) => {
    // SIGHUP too: a closed terminal must not leave Claude running on its own.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
      process.on(signal, () => {
        if (interrupted) process.exit(130);
        interrupted = true;
        stop();
      });
    }
  },
});
process.exitCode = code;
