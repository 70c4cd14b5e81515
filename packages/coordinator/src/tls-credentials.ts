import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/** A certificate and its key, read and checked; what the HTTPS server is given. */
export interface TlsCredentials {
  cert: string;
  key: string;
  /** SHA-256 of the leaf certificate, colon-separated hex (what `openssl x509 -fingerprint -sha256` prints). */
  fingerprint256: string;
  validTo: string;
  expired: boolean;
}

/**
 * Reads the certificate chain and key and proves they belong together, so a typo or a half-copied
 * renewal is refused here, with the file names, rather than as an opaque handshake failure later.
 * Throws an Error whose message names what is wrong.
 */
export function loadTlsCredentials(files: TlsFiles, now: Date = new Date()): TlsCredentials {
  const cert = readPem(files.certFile, 'certificate');
  const key = readPem(files.keyFile, 'key');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`tls.certFile ${files.certFile} holds no PEM certificate: ${(err as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new Error(`tls.keyFile ${files.keyFile} holds no PEM private key: ${(err as Error).message}`);
  }
  if (!matches) throw new Error(`tls.keyFile ${files.keyFile} is not the key of the certificate in ${files.certFile}`);
  try {
    // What the server will do with them; catches a chain OpenSSL will not load.
    createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(`${files.certFile} and ${files.keyFile} cannot serve TLS: ${(err as Error).message}`);
  }
  return {
    cert,
    key,
    fingerprint256: leaf.fingerprint256,
    validTo: new Date(leaf.validTo).toISOString(),
    expired: new Date(leaf.validTo).getTime() < now.getTime(),
  };
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(
      `cannot read the TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}
