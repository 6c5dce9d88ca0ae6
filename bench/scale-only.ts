// Only the scale section: `npx tsx bench/scale-only.ts 1000 100000` (npm run bench runs it among the rest).
import { scaleFigures } from './scale.js';

async function main() {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  const scale = [];
  for (const n of sizes.length ? sizes : [1_000, 100_000]) scale.push(await scaleFigures(n, (line) => process.stderr.write(`${line}\n`)));
  process.stdout.write(`${JSON.stringify({ scale }, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
