import { type Facts, FactsSchema } from '@fleetpatch/shared';
import si from 'systeminformation';

/** Facts the coordinator targets on (os, distro, arch) and shows; read once at start. */
export async function collectFacts(): Promise<Facts> {
  const [os, cpu, mem] = await Promise.all([si.osInfo(), si.cpu(), si.mem()]);
  return FactsSchema.parse({
    hostname: os.hostname.slice(0, 255),
    os: os.platform.slice(0, 100),
    distro: os.distro.slice(0, 100),
    release: os.release.slice(0, 100),
    kernel: os.kernel.slice(0, 200),
    arch: os.arch.slice(0, 50),
    cpus: cpu.cores,
    memoryBytes: mem.total,
  });
}
