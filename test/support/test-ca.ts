/**
 * Throwaway certificate authorities for the TLS tests, made with the `openssl` command line in a
 * temp dir: P-256 keys (milliseconds, unlike RSA), and `openssl ca` because OpenSSL 3.0's `x509`
 * cannot backdate a certificate and the tests need an expired one.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Requirement, requirement } from './requirements.js';

/** The TLS tests make their CA and certificates with the openssl command. */
export const openssl: Requirement = requirement(
  'the openssl command',
  spawnSync('openssl', ['version']).status === 0
    ? { available: true }
    : { available: false, reason: 'the openssl command is not installed' },
);

export interface TestCertificate {
  certFile: string;
  keyFile: string;
  /** SHA-256 of the certificate, upper-case hex with colons, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint256: string;
}

export interface TestCa {
  name: string;
  dir: string;
  caFile: string;
  /** Signs a P-256 server certificate for `sans` (OpenSSL syntax: `IP:127.0.0.1,DNS:localhost`). */
  issue(name: string, options?: { sans?: string; notBefore?: Date; notAfter?: Date }): TestCertificate;
}

export const LOOPBACK_SANS = 'IP:127.0.0.1,DNS:localhost';
const DAY_MS = 24 * 3600 * 1000;
const NEW_P256_KEY = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes';

const CA_CONFIG = `[ca]
default_ca = test
[test]
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SANS
`;

/** A new self-signed CA in `<parent>/<name>`, valid from yesterday to next week. */
export function createTestCa(parent: string, name: string): TestCa {
  const dir = join(parent, name);
  mkdirSync(join(dir, 'issued'), { recursive: true });
  writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  const openssl = (args: string[], env: Record<string, string> = {}) =>
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  openssl([
    ...`req -x509 ${NEW_P256_KEY} -keyout ca.key -out ca.pem -days 7`.split(' '),
    ...['-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE'],
    ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
  ]);
  return {
    name,
    dir,
    caFile: join(dir, 'ca.pem'),
    issue(leaf, options = {}) {
      const now = Date.now();
      const notBefore = options.notBefore ?? new Date(now - DAY_MS);
      const notAfter = options.notAfter ?? new Date(now + 7 * DAY_MS);
      const certFile = join(dir, `${leaf}.pem`);
      const keyFile = join(dir, `${leaf}.key`);
      const csrFile = join(dir, `${leaf}.csr`);
      openssl([...`req -new ${NEW_P256_KEY}`.split(' '), '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${leaf}`]);
      openssl(
        [
          ...'ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -notext -extensions server'.split(' '),
          ...[
            '-in',
            csrFile,
            '-out',
            certFile,
            '-startdate',
            opensslTime(notBefore),
            '-enddate',
            opensslTime(notAfter),
          ],
        ],
        { SANS: options.sans ?? LOOPBACK_SANS },
      );
      return { certFile, keyFile, fingerprint256: new X509Certificate(readFileSync(certFile)).fingerprint256 };
    },
  };
}

/** `YYYYMMDDHHMMSSZ`, the GeneralizedTime `openssl ca -startdate/-enddate` take. */
function opensslTime(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}
