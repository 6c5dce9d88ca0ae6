import { LocalRuntime } from '../lib/local/local-runtime.ts';
const t0 = Date.now();
const rt = await LocalRuntime.start({ cacheDir: '/tmp/cs-cache' });
console.log('started', Date.now() - t0);
for (const input of [{ prompt: 'hello', projectId: 'demo', trigger: 'cli' }, { projectId: 'bad id' }]) {
  const ex = rt.startExecution(input);
  (async () => { for await (const e of ex.events) console.log(e.type, (e as any).state?.name ?? "", (e as any).Error ?? "", JSON.stringify((e as any).state?.output ?? "").slice(0,300)); })();
  const o = await ex.outcome;
  console.log(JSON.stringify(o).slice(0, 1500));
  console.log(await rt.repository.get(ex.name));
}
await rt.close();
console.log('total', Date.now() - t0);
