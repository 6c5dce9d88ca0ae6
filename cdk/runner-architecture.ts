import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { CpuArchitecture } from 'aws-cdk-lib/aws-ecs';
import { Architecture } from 'aws-cdk-lib/aws-lambda';

/**
 * The CPU the runner image is built for, and both runners run on: `arm64` (Graviton, as our other
 * functions; about 20% cheaper per second on Lambda and Fargate) or `x86_64`. The image build runs
 * nothing of it but dnf (functions/runner/Dockerfile), so any machine can build either.
 */
export type RunnerArchitecture = 'arm64' | 'x86_64';
export const RUNNER_ARCHITECTURES: readonly RunnerArchitecture[] = ['arm64', 'x86_64'];
export const DEFAULT_RUNNER_ARCHITECTURE: RunnerArchitecture = 'arm64';

/** The one architecture, as the image asset, Lambda and ECS each spell it. */
export function runnerPlatform(architecture: RunnerArchitecture): { image: Platform; lambda: Architecture; ecs: CpuArchitecture } {
  return architecture === 'arm64'
    ? { image: Platform.LINUX_ARM64, lambda: Architecture.ARM_64, ecs: CpuArchitecture.ARM64 }
    : { image: Platform.LINUX_AMD64, lambda: Architecture.X86_64, ecs: CpuArchitecture.X86_64 };
}

/** `runnerArchitecture`, checked: a bad one fails the synth, naming the setting. */
export function checkedRunnerArchitecture(value: unknown, name: string): RunnerArchitecture {
  if (value === undefined || value === null || value === '') return DEFAULT_RUNNER_ARCHITECTURE;
  if (RUNNER_ARCHITECTURES.includes(value as RunnerArchitecture)) return value as RunnerArchitecture;
  throw new Error(`${name} must be ${RUNNER_ARCHITECTURES.join(' or ')}, not ${JSON.stringify(value)}`);
}
