/**
 * Loads dpl's protobuf contract (proto/dpl/v1) with @grpc/proto-loader, once per process.
 */
import { isAbsolute, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { Root, type Type } from 'protobufjs';
import type { ProtoGrpcType as HeadProto } from './generated/head';

/**
 * The loader options; scripts/gen.js passes the same ones to proto-loader-gen-types, so the
 * generated types describe exactly what is loaded: 64-bit integers as strings, enums as their
 * names, defaults filled in, the name of the set oneof field, and field names as written.
 */
export const PROTO_LOADER_OPTIONS: Options = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  keepCase: true,
};

/** Where the .proto files are (copied into the package by the build). */
export const PROTO_DIR = join(__dirname, '..', 'proto');

/** Every service and message of package dpl.v1. */
export type DplProto = HeadProto['dpl']['v1'];

let loaded: DplProto | undefined;

/** The loaded `dpl.v1` package: service constructors and message types. */
export function loadDplProto(): DplProto {
  if (loaded === undefined) {
    const definition = loadSync(['dpl/v1/head.proto'], {
      ...PROTO_LOADER_OPTIONS,
      includeDirs: [PROTO_DIR],
    });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as HeadProto;
    loaded = pkg.dpl.v1;
  }
  return loaded;
}

let root: Root | undefined;

/**
 * The request and response types of a dpl method (`/dpl.v1.HeadService/ConnectWorker`), from a
 * protobufjs reflection of the same files (parsed on first use, ~10 ms), or undefined for a
 * path that is not one of dpl's.
 */
export function dplMethodTypes(path: string): { request: Type; response: Type } | undefined {
  const m = /^\/([\w.]+)\/(\w+)$/.exec(path);
  if (m === null || !m[1]!.startsWith('dpl.v1.')) return undefined;
  if (root === undefined) {
    const r = new Root();
    r.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(PROTO_DIR, target));
    r.loadSync('dpl/v1/head.proto', { keepCase: PROTO_LOADER_OPTIONS.keepCase });
    r.resolveAll();
    root = r;
  }
  const method = root.lookup(m[1]!) as { methods?: Record<string, { resolvedRequestType: Type | null; resolvedResponseType: Type | null }> } | null;
  const def = method?.methods?.[m[2]!];
  if (!def?.resolvedRequestType || !def.resolvedResponseType) return undefined;
  return { request: def.resolvedRequestType, response: def.resolvedResponseType };
}

/**
 * Channel options every dpl client and server uses. Messages stay under gRPC's default 4 MiB
 * limit (bulk bytes travel as chunked streams); keepalive pings detect a dead peer on an idle
 * connection; the client's flow-control window is raised for streamed bulk data.
 */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
};

/** Server options matching {@link CHANNEL_OPTIONS}. */
export const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  // A connection without calls for this long is closed (GOAWAY; a client reconnects on its next
  // call): connections that never carry a call with the token do not pile up.
  'grpc.max_connection_idle_ms': 15_000,
};
