/**
 * TLS for every connection of a cluster: gRPC (workers and clients to the head), the data plane
 * (worker to worker, head to worker) and the head's HTTP endpoints. A TLS cluster is all TLS:
 * daemons give a certificate, its key and the CA that signed the others' certificates; clients
 * give the CA.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** Paths of PEM files (as `--tls-cert`, `--tls-key`, `--tls-ca`). */
export interface TlsFiles {
  /** This process's certificate (daemons). */
  cert?: string;
  /** Its private key (daemons). */
  key?: string;
  /** The CA that signed the certificates of the processes this one connects to. */
  ca?: string;
}

/** The PEM contents of {@link TlsFiles}. */
export interface TlsMaterial {
  cert?: Buffer;
  key?: Buffer;
  ca: Buffer;
}

/**
 * Reads the PEM files. A daemon (`role` 'daemon') needs all three; a client needs the CA.
 * Returns undefined when no file is given (no TLS).
 * @throws TypeError naming the flag, the file and what to do.
 */
export function loadTls(files: TlsFiles | undefined, role: 'daemon' | 'client'): TlsMaterial | undefined {
  if (files === undefined || (files.cert === undefined && files.key === undefined && files.ca === undefined)) return undefined;
  const need = role === 'daemon' ? (['cert', 'key', 'ca'] as const) : (['ca'] as const);
  const missing = need.filter((k) => files[k] === undefined);
  if (missing.length > 0) {
    throw new TypeError(
      role === 'daemon'
        ? `TLS needs --tls-cert, --tls-key and --tls-ca together (missing ${missing.map((m) => `--tls-${m}`).join(', ')}): ` +
            'a daemon presents its certificate and checks the others against the CA'
        : 'TLS needs --tls-ca: the CA that signed the head\'s certificate',
    );
  }
  const read = (k: keyof TlsFiles): Buffer | undefined => {
    const path = files[k];
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (e) {
      throw new TypeError(`cannot read --tls-${k} ${path}: ${(e as Error).message}`);
    }
  };
  return { cert: read('cert'), key: read('key'), ca: read('ca')! };
}

/** Credentials for a gRPC server: TLS with the daemon's certificate, or insecure. */
export function serverCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca, [{ private_key: tls.key!, cert_chain: tls.cert! }], false);
}

/** Credentials for a gRPC channel: TLS checked against the CA, or insecure. */
export function channelCredentials(tls: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(tls.ca);
}
