import { Duration } from 'aws-cdk-lib';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { DEFAULT_GITHUB_API_URL } from '../lib/github/github-client.js';
import { PURPOSE_PERMISSIONS, type TokenPurpose } from '../lib/github/git-token-minter.js';
import { ServiceFunction } from './service-function.js';

export interface GitTokenMinterProps {
  /**
   * What its tokens are for, so which permissions it mints, all it mints: `git` (contents write,
   * for the runners' clone and push) or `report` (issues and pull requests write, for the reporter).
   */
  readonly purpose: TokenPurpose;
  /** The GitHub App's secret: JSON `{appId, privateKey}` (githubAppSecretName). */
  readonly appSecret: ISecret;
  /** The repositories a token may be minted for (gitTokenScopes). */
  readonly gitTokenScopes: readonly string[];
  /** GitHub's REST API. @default https://api.github.com */
  readonly apiUrl?: string;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * A GitHub App's installation tokens of one purpose: with its sibling of the other purpose, the only
 * functions that read the App's private key, each minting a token of one repository under
 * gitTokenScopes with its purpose's permissions only, for the one caller granted it
 * (lambda:InvokeFunction, `grantMint`): the runners invoke the `git` minter (contents write), the
 * reporter the `report` minter (issues and pull requests write). Neither caller holds the key or
 * can get the other's permissions, and a token opens one repository for an hour at most.
 */
export class GitTokenMinter extends Construct {
  readonly function: NodejsFunction;
  readonly purpose: TokenPurpose;

  constructor(scope: Construct, id: string, props: GitTokenMinterProps) {
    super(scope, id);
    this.purpose = props.purpose;
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/git-token-minter/handler.ts',
      description: `claude-sessions: a GitHub App installation token of one repository, ${props.purpose === 'git' ? 'for a runner\'s git' : 'for a GitHub session\'s report'} (${Object.entries(PURPOSE_PERMISSIONS[props.purpose]).map(([p, a]) => `${p} ${a}`).join(', ')})`,
      serviceName: `claude-sessions-${props.purpose}-token-minter`,
      // Two REST calls of 20 s at most each.
      timeout: Duration.seconds(45),
      logRetention: props.logRetention,
      environment: {
        GITHUB_APP_SECRET_ARN: props.appSecret.secretArn,
        GITHUB_API_URL: props.apiUrl ?? DEFAULT_GITHUB_API_URL,
        GIT_TOKEN_SCOPES: props.gitTokenScopes.join(','),
        TOKEN_PURPOSE: props.purpose,
      },
    }).function;
    props.appSecret.grantRead(this.function);
  }

  /** The grantee may ask for a token (and so for nothing but a token of this purpose, of a repository under the scopes). */
  grantMint(grantee: IGrantable): Grant {
    // The function itself, unqualified (what the runner invokes): grantInvoke would add every version and alias (`:*`).
    return Grant.addToPrincipal({ grantee, actions: ['lambda:InvokeFunction'], resourceArns: [this.function.functionArn] });
  }
}
