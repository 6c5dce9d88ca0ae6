import { buildClaudeArgs } from '../lib/claude/claude-args.ts';
console.log(buildClaudeArgs({ prompt: 'hello', sessionId: 'd1a5563b-5b4d-429b-96b3-8bd8aca30a3a', conversation: 'fresh' }));
