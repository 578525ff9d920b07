/**
 * The worker's data server: serves objects from its store to other workers and the head, in
 * chunks, pulled by the receiver (FetchObject is server-streaming, so the receiver's larger
 * flow-control window applies).
 */
import * as grpc from '@grpc/grpc-js';
import {
  SERVER_OPTIONS,
  chunksOf,
  loadDplProto,
  presentedToken,
  shutdownServer,
  tokenMatches,
  unauthenticated,
  type DataServiceHandlers,
} from '@dpl/wire';
import type { ObjectStore } from '../store/object-store';

export interface DataServer {
  readonly port: number;
  /** Bytes served so far (for tests and metrics). */
  readonly bytesServed: number;
  stop(): Promise<void>;
}

export async function startDataServer(
  store: ObjectStore,
  host: string,
  token: string | undefined,
): Promise<DataServer> {
  const server = new grpc.Server(SERVER_OPTIONS);
  let served = 0;
  const handlers: DataServiceHandlers = {
    FetchObject(call) {
      if (!tokenMatches(token, presentedToken(call.metadata))) {
        call.emit('error', unauthenticated());
        return;
      }
      const bytes = store.get(call.request.object_id);
      if (bytes === undefined) {
        call.emit('error', {
          code: grpc.status.NOT_FOUND,
          details: `object ${call.request.object_id} is not on this worker (released, or the worker restarted)`,
        });
        return;
      }
      // Write with backpressure: wait for 'drain' when the stream's buffer is full.
      const it = chunksOf(bytes);
      let first = true;
      const pump = (): void => {
        for (;;) {
          const next = it.next();
          if (next.done === true) {
            call.end();
            return;
          }
          served += next.value.byteLength;
          const ok = call.write({ size: first ? String(bytes.byteLength) : '0', chunk: next.value });
          first = false;
          if (!ok) {
            call.once('drain', pump);
            return;
          }
        }
      };
      pump();
    },
  };
  server.addService(loadDplProto().DataService.service, handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(new Error(`cannot start the data server on ${host}: ${err.message}`, { cause: err })) : resolve(p),
    );
  });
  return {
    port,
    get bytesServed() {
      return served;
    },
    stop: () => shutdownServer(server, 1_000),
  };
}
