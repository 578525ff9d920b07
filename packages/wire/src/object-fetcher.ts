/**
 * Fetches objects from other workers' data servers (one channel per peer), assembling the
 * chunks into one aligned buffer.
 */
import * as grpc from '@grpc/grpc-js';
import { DplError, DplErrorCode } from '@dpl/core';
import { CHANNEL_OPTIONS, loadDplProto } from './proto';
import { ChunkAssembler } from './chunks';
import { tokenMetadata } from './auth';
import type { DataServiceClient } from './generated/dpl/v1/DataService';
import type { FetchObjectResponse } from './generated/dpl/v1/FetchObjectResponse';

export class ObjectFetcher {
  private fetched = 0;
  private readonly clients = new Map<string, DataServiceClient>();

  constructor(private readonly token: string | undefined) {}

  /** The object's bytes. @throws DplError(OBJECT_LOST) when the owner no longer has it. */
  fetch(address: string, objectId: string): Promise<Uint8Array> {
    let client = this.clients.get(address);
    if (client === undefined) {
      const { DataService } = loadDplProto();
      client = new DataService(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      this.clients.set(address, client);
    }
    return new Promise((resolve, reject) => {
      let assembler: ChunkAssembler | undefined;
      const call = client.FetchObject({ object_id: objectId }, tokenMetadata(this.token));
      call.on('data', (msg: FetchObjectResponse) => {
        assembler ??= new ChunkAssembler(Number(msg.size));
        assembler.add(msg.chunk);
      });
      call.on('error', (e: grpc.ServiceError) =>
        reject(
          new DplError(DplErrorCode.OBJECT_LOST, `cannot fetch object ${objectId} from ${address}: ${e.details || e.message}`, {
            cause: e,
          }),
        ),
      );
      call.on('end', () => {
        try {
          const bytes = (assembler ?? new ChunkAssembler(0)).finish();
          this.fetched += bytes.byteLength;
          resolve(bytes);
        } catch (e) {
          reject(new DplError(DplErrorCode.OBJECT_LOST, `object ${objectId} from ${address} arrived incomplete: ${(e as Error).message}`));
        }
      });
    });
  }

  /** Bytes fetched so far. */
  get bytesFetched(): number {
    return this.fetched;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
