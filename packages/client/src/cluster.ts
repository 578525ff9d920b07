/**
 * A connection to a dpl cluster's head.
 */
import * as grpc from '@grpc/grpc-js';
import { DplError, DplErrorCode } from '@dpl/core';
import {
  CHANNEL_OPTIONS,
  loadDplProto,
  statusFromProto,
  tokenMetadata,
  type ClusterStatus,
  type GetStatusResponse,
  type HeadServiceClient,
} from '@dpl/wire';

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The cluster token, when the head has one. @default undefined */
  token?: string;
  /** How long to wait for the head to answer. @default 5000 */
  timeoutMs?: number;
}

/** A connected cluster. */
export interface Cluster {
  /** The head's `host:port`. */
  readonly address: string;
  /** Workers with their resources (total and free), and jobs. */
  status(): Promise<ClusterStatus>;
  /** Closes the connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * Connects to a head and checks that it answers (and accepts the token).
 *
 * ```ts
 * const cluster = await connect('127.0.0.1:6380', { token: process.env.DPL_TOKEN });
 * console.log((await cluster.status()).workers);
 * await cluster.close();
 * ```
 * @throws DplError naming the address when the head cannot be reached or refuses the token.
 */
export async function connect(address: string, options: ConnectOptions = {}): Promise<Cluster> {
  if (typeof address !== 'string' || !/^(\[[^\]]+\]|[^:\s]+):\d+$/.test(address)) {
    throw new TypeError(`address must be the head's host:port, e.g. 127.0.0.1:6380, got ${JSON.stringify(address)}`);
  }
  const { HeadService } = loadDplProto();
  const client = new HeadService(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  const cluster = new ClusterConnection(address, client, options);
  try {
    await cluster.status();
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}

class ClusterConnection implements Cluster {
  private closed = false;
  private readonly timeoutMs: number;

  constructor(
    readonly address: string,
    private readonly client: HeadServiceClient,
    private readonly options: ConnectOptions,
  ) {
    this.timeoutMs = options.timeoutMs ?? 5_000;
  }

  status(): Promise<ClusterStatus> {
    return new Promise((resolve, reject) => {
      this.client.GetStatus(
        {},
        tokenMetadata(this.options.token),
        { deadline: Date.now() + this.timeoutMs },
        (err: grpc.ServiceError | null, res?: GetStatusResponse) => {
          if (err !== null) reject(this.explain(err));
          else resolve(statusFromProto(res!));
        },
      );
    });
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.client.close();
    }
    return Promise.resolve();
  }

  private explain(err: grpc.ServiceError): DplError {
    if (err.code === grpc.status.UNAUTHENTICATED) {
      return new DplError(
        DplErrorCode.UNAUTHENTICATED,
        `the head at ${this.address} refused the token: ${err.details}`,
        { cause: err },
      );
    }
    if (err.code === grpc.status.DEADLINE_EXCEEDED || err.code === grpc.status.UNAVAILABLE) {
      return new DplError(
        DplErrorCode.UNAVAILABLE,
        `cannot reach the dpl head at ${this.address} (no answer within ${this.timeoutMs} ms); ` +
          'is `dpl head start` running there, and is the address right (--address or DPL_ADDRESS)?',
        { cause: err },
      );
    }
    return new DplError(DplErrorCode.INTERNAL, `the head at ${this.address} failed: ${err.details}`, { cause: err });
  }
}
