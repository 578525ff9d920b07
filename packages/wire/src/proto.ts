/**
 * dpl's protobuf contract (proto/dpl/v1), once per process: the gRPC service built straight from
 * a protobufjs reflection of it, which the build made from the .proto files as JSON
 * (scripts/gen.js). The same messages as @grpc/proto-loader gives with PROTO_LOADER_OPTIONS,
 * without parsing the .proto text or building the descriptors gRPC reflection would use (~40 ms
 * of every dpl process's start).
 */
import * as grpc from '@grpc/grpc-js';
import type { Options } from '@grpc/proto-loader';
import { join } from 'node:path';
import { Root, type INamespace, type IConversionOptions, type Method, type Type } from 'protobufjs';
import { DPL_PROTO_JSON } from './generated/descriptor';
import type { ProtoGrpcType as HeadProto } from './generated/head';

/**
 * The loader options: scripts/gen.js passes the same ones to proto-loader-gen-types, so the
 * generated types describe exactly what is decoded: 64-bit integers as strings, enums as their
 * names, defaults filled in, the name of the set oneof field, and field names as written.
 */
export const PROTO_LOADER_OPTIONS: Options = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  keepCase: true,
};

/** How messages are decoded into objects: PROTO_LOADER_OPTIONS (keepCase was the parse's, at build time). */
const TO_OBJECT: IConversionOptions = PROTO_LOADER_OPTIONS;

/** Where the .proto files are (copied into the package by the build, for other languages). */
export const PROTO_DIR = join(__dirname, '..', 'proto');

/** dpl's gRPC services. */
export type DplProto = Pick<HeadProto['dpl']['v1'], 'HeadService'>;

let root: Root | undefined;

/** The protobufjs reflection of package dpl.v1 (every message and service). */
function dplRoot(): Root {
  if (root === undefined) {
    root = Root.fromJSON(DPL_PROTO_JSON as INamespace);
    root.resolveAll();
  }
  return root;
}

let loaded: DplProto | undefined;

/** The `dpl.v1` services: constructors of their clients, each with its definition as `service`. */
export function loadDplProto(): DplProto {
  if (loaded === undefined) {
    const service = dplRoot().lookupService('dpl.v1.HeadService');
    const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
    for (const method of service.methodsArray) definition[method.name] = methodDefinition('dpl.v1.HeadService', method);
    loaded = { HeadService: grpc.makeClientConstructor(definition, 'HeadService') } as unknown as DplProto;
  }
  return loaded;
}

/** A method as gRPC calls it, encoding and decoding as proto-loader does. */
function methodDefinition(serviceName: string, method: Method): grpc.MethodDefinition<object, object> {
  const request = method.resolvedRequestType!;
  const response = method.resolvedResponseType!;
  return {
    path: `/${serviceName}/${method.name}`,
    requestStream: method.requestStream === true,
    responseStream: method.responseStream === true,
    requestSerialize: serializer(request),
    requestDeserialize: deserializer(request),
    responseSerialize: serializer(response),
    responseDeserialize: deserializer(response),
    // The client's lower-camel-case alias of each method, as proto-loader names it.
    originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
  };
}

function serializer(type: Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`a ${type.name} to send is an array, not one message`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), TO_OBJECT);
}

/**
 * The request and response types of a dpl method (`/dpl.v1.HeadService/ConnectWorker`), from the
 * same reflection, or undefined for a path that is not one of dpl's.
 */
export function dplMethodTypes(path: string): { request: Type; response: Type } | undefined {
  const m = /^\/([\w.]+)\/(\w+)$/.exec(path);
  if (m === null || !m[1]!.startsWith('dpl.v1.')) return undefined;
  const method = dplRoot().lookup(m[1]!) as { methods?: Record<string, { resolvedRequestType: Type | null; resolvedResponseType: Type | null }> } | null;
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
