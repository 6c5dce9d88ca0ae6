import { Duration, RemovalPolicy, Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { CLOSED_TAG } from '../lib/claude/transcript-store.js';

export interface TranscriptBucketProps {
  /** How long a closed milestone's transcript (and any replaced version) is kept. @default 30 days */
  readonly keepClosedFor?: Duration;
  /** @default RemovalPolicy.RETAIN: conversations outlive the stack */
  readonly removalPolicy?: RemovalPolicy;
}

const TRANSCRIPTS = 'milestones/*';
/** Patches of workspace changes that could not be pushed (lib/claude/transcript-store.ts savePatch). */
const PATCHES = 'workspaces/*';

/**
 * Milestone transcripts: one object per milestone, encrypted, TLS only, versioned (the
 * milestone item records the version a resumed task restores), expired once closed.
 */
export class TranscriptBucket extends Construct {
  readonly bucket: Bucket;

  constructor(scope: Construct, id: string, props: TranscriptBucketProps = {}) {
    super(scope, id);
    const keep = props.keepClosedFor ?? Duration.days(30);
    this.bucket = new Bucket(this, 'Bucket', {
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      versioned: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      lifecycleRules: [
        // `milestone close` tags the transcript; the live milestones' objects are never expired.
        { id: 'expire-closed-milestones', tagFilters: { [CLOSED_TAG.Key]: CLOSED_TAG.Value }, expiration: keep },
        { id: 'expire-replaced-versions', noncurrentVersionExpiration: keep, abortIncompleteMultipartUploadAfter: Duration.days(1) },
        // A patch is kept as long as a closed milestone's transcript: long enough to apply it by hand.
        { id: 'expire-workspace-patches', prefix: 'workspaces/', expiration: keep },
      ],
    });
    Validations.of(this).acknowledge({
      id: 'AwsSolutions::AwsSolutions-S1',
      reason: 'Only the runners (read/write) and the API (tagging on close) reach this bucket, through their roles; CloudTrail data events audit it where required, without a second bucket of access logs.',
    });
    // Granted roles live elsewhere in the stack; the finding names this bucket's objects exactly.
    const logicalId = Stack.of(this).getLogicalId(this.bucket.node.defaultChild as CfnElement);
    Validations.of(Stack.of(this)).acknowledge({
      id: `AwsSolutions::AwsSolutions-IAM5[Resource::<${logicalId}.Arn>/${TRANSCRIPTS}]`,
      reason: 'Transcripts are one object per milestone under milestones/: roles get exactly the actions they need on that prefix, not the bucket.',
    });
    Validations.of(Stack.of(this)).acknowledge({
      id: `AwsSolutions::AwsSolutions-IAM5[Resource::<${logicalId}.Arn>/${PATCHES}]`,
      reason: 'One patch object per session under workspaces/, written only when a push failed: the runners may put there and nothing else.',
    });
  }

  /**
   * Get (any recorded version) and put of transcripts, nothing else: the runners. ListBucket
   * on the prefix too: without it S3 answers a missing transcript with 403, not NoSuchKey, and
   * the runner could not tell a lost transcript (the milestone is BROKEN) from a denied read.
   */
  grantReadWrite(grantee: IGrantable): void {
    Grant.addToPrincipal({ grantee, actions: ['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject'], resourceArns: [this.bucket.arnForObjects(TRANSCRIPTS)] });
    Grant.addToPrincipal({
      grantee, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn], conditions: { StringLike: { 's3:prefix': [TRANSCRIPTS] } },
    });
  }

  /** Putting the patch of a workspace whose push failed, so nothing Claude did is lost: the runners. */
  grantPatchWrites(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({ grantee, actions: ['s3:PutObject'], resourceArns: [this.bucket.arnForObjects(PATCHES)] });
  }

  /** Tagging a closed milestone's transcript for expiry: the API. */
  grantMarkClosed(grantee: IGrantable): void {
    Grant.addToPrincipal({ grantee, actions: ['s3:PutObjectTagging'], resourceArns: [this.bucket.arnForObjects(TRANSCRIPTS)] });
  }
}
