import { z } from 'zod';

// Which provider serves Claude, and which Bedrock models a deployment may invoke
// (docs/ARCHITECTURE.md#bedrock). One schema for the stack's props and context and for
// the runner's environment, so a model the synth accepted is one the runner can run.

const BEDROCK_ARN = /^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:(\d{12})?:(foundation-model|inference-profile|application-inference-profile)\/[A-Za-z0-9._:-]+$/;
/** A system profile's geography prefix: us., eu., apac., jp., au., global., us-gov. … */
const GEO = '[a-z]{2,6}(?:-[a-z]{2,4})?';
const BEDROCK_ID = new RegExp(`^(${GEO}\\.)?anthropic\\.[a-z0-9.-]+(:\\d+)?$`);
const GEO_PROFILE = new RegExp(`^${GEO}\\.(?=anthropic\\.)`);

/** A base model id, a system inference profile id (us., eu., global. …), or the ARN of either or of an application inference profile. */
export const BedrockModel = z
  .string()
  .refine((m) => BEDROCK_ID.test(m) || BEDROCK_ARN.test(m), {
    message: 'must be an Anthropic model id on Bedrock (anthropic.claude-…, or an inference profile id such as us.anthropic.claude-…) or a Bedrock model or inference profile ARN',
  });

export const ApplicationProfileArn = z
  .string()
  .regex(/^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d{12}:application-inference-profile\/[a-z0-9]+$/, 'must be an application inference profile ARN (arn:aws:bedrock:<region>:<account>:application-inference-profile/<id>)');

export const ModelSettings = z.discriminatedUnion('provider', [
  z.strictObject({
    provider: z.literal('anthropic'),
    /** Pins the CLI's model; unset, the CLI's own default. */
    model: z.string().regex(/^[a-z0-9.:-]+$/, 'must be a model name such as claude-sonnet-4-5').optional(),
  }),
  z.strictObject({
    provider: z.literal('bedrock'),
    model: BedrockModel,
    smallFastModel: BedrockModel.optional(),
    /** An application inference profile per project, so the Bedrock bill divides by project. */
    projectModels: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be project ids'), ApplicationProfileArn).optional(),
  }),
]);
export type ModelSettings = z.output<typeof ModelSettings>;
export type BedrockSettings = Extract<ModelSettings, { provider: 'bedrock' }>;

/** Parses model settings or throws naming the field (`model`, `projectModels.<project>` …) and the source it came from. */
export function parseModelSettings(
  raw: { provider?: unknown } & Record<string, unknown>, source: string, names: Record<string, string> = {},
): ModelSettings {
  const name = (field: string) => names[field] ?? field;
  const given = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined && v !== ''));
  const input: Record<string, unknown> = { provider: 'anthropic', ...given };
  if (input.provider !== 'anthropic' && input.provider !== 'bedrock') {
    throw new Error(`${source} ${name('provider')} must be anthropic or bedrock, not ${JSON.stringify(input.provider)}`);
  }
  if (input.provider === 'bedrock' && input.model === undefined) {
    throw new Error(`${source} ${name('model')} is required with provider bedrock: an inference profile id or ARN (an unpinned CLI picks its own default)`);
  }
  const parsed = ModelSettings.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new Error(parsed.error.issues.map((i) => `${source} ${[name(String(i.path[0] ?? '(settings)')), ...i.path.slice(1)].join('.')} ${i.message}`).join('; '));
}

/** The model a session of this project runs on: its project's application inference profile, else the deployment's. */
export function modelForProject(settings: ModelSettings, projectId: string): string | undefined {
  if (settings.provider !== 'bedrock') return settings.model;
  return settings.projectModels?.[projectId] ?? settings.model;
}

export interface InvokeGrant {
  /** What bedrock:InvokeModel* may be called on directly. */
  resources: string[];
  /** Foundation models and system profiles reachable only through one of those profiles (bedrock:InferenceProfileArn). */
  throughProfiles: { profileArns: string[]; resources: string[] } | null;
}

/**
 * The IAM resources that invoking these models needs, and nothing more: a profile's ARN, and the
 * foundation models it routes to in any region, only through that profile. `region`, `account`
 * and `partition` may be CloudFormation tokens.
 */
export function invokeGrant(models: readonly string[], at: { partition: string; region: string; account: string }): InvokeGrant {
  const direct = new Set<string>();
  const profiles = new Set<string>();
  const routed = new Set<string>();
  for (const model of new Set(models)) {
    if (model.startsWith('arn:')) {
      const [, , , , , resource] = model.split(':');
      const kind = resource!.split('/')[0];
      direct.add(model);
      if (kind === 'foundation-model') continue;
      profiles.add(model);
      if (kind === 'inference-profile') routed.add(foundationModelArn(baseModelOf(model.split('/')[1]!), at.partition));
      else {
        // An application profile's models are set when it is created, not known here.
        routed.add(`arn:${at.partition}:bedrock:*::foundation-model/*`);
        routed.add(`arn:${at.partition}:bedrock:*:*:inference-profile/*`);
      }
    } else if (GEO_PROFILE.test(model)) {
      const profile = `arn:${at.partition}:bedrock:${at.region}:${at.account}:inference-profile/${model}`;
      direct.add(profile);
      profiles.add(profile);
      routed.add(foundationModelArn(baseModelOf(model), at.partition));
    } else {
      direct.add(`arn:${at.partition}:bedrock:${at.region}::foundation-model/${model}`);
    }
  }
  return {
    resources: [...direct],
    throughProfiles: profiles.size ? { profileArns: [...profiles], resources: [...routed] } : null,
  };
}

/** An IAM policy statement as JSON: the model role's policy and each session's policy are both made of these. */
export interface PolicyStatementJson {
  Effect: 'Allow';
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string[]>>;
}

/**
 * What the CLI needs on Bedrock for these grants: invoke them, reach what profiles route to only
 * through them, read the profiles, list the system ones (the CLI does before its first call).
 * One list for the model role (cdk/model-access.ts) and the session policy (model-endpoint.ts),
 * whose intersection is what a session may do: they cannot drift apart.
 */
export function invokeStatements(grant: InvokeGrant): PolicyStatementJson[] {
  const invoke = ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'];
  return [
    { Effect: 'Allow', Action: invoke, Resource: grant.resources },
    ...(grant.throughProfiles ? [
      { Effect: 'Allow' as const, Action: invoke, Resource: grant.throughProfiles.resources, Condition: { StringEquals: { 'bedrock:InferenceProfileArn': grant.throughProfiles.profileArns } } },
      { Effect: 'Allow' as const, Action: 'bedrock:GetInferenceProfile', Resource: grant.throughProfiles.profileArns },
    ] : []),
    { Effect: 'Allow', Action: 'bedrock:ListInferenceProfiles', Resource: '*' },
  ];
}

/** `us.anthropic.claude-x` → `anthropic.claude-x`. */
function baseModelOf(id: string): string {
  return id.replace(GEO_PROFILE, '');
}

/** In any region: a cross-region profile routes to the regions it lists (global: any), and only through it. */
function foundationModelArn(baseModel: string, partition: string): string {
  return `arn:${partition}:bedrock:*::foundation-model/${baseModel}`;
}
