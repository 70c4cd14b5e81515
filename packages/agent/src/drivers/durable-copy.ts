import { chmod, copyFile, open } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Copies `from` to `to` and makes it durable (fsync the file, then its directory), so a snapshot
 * that the journal points at survives a power cut.
 */
export async function durableCopy(from: string, to: string, mode = 0o644): Promise<void> {
  await copyFile(from, to);
  await chmod(to, mode);
  const file = await open(to, 'r');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
  const dir = await open(join(to, '..'), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
