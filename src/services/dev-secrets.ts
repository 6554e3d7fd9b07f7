import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Development only: the OTP pepper, generated once and kept in DATA_DIR (mode 0600). */
export async function loadOrCreateDevelopmentPepper(dataDir: string): Promise<{ pepper: string; created: boolean }> {
  const file = path.join(dataDir, 'otp-pepper');
  try {
    return { pepper: (await readFile(file, 'utf8')).trim(), created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dataDir, { recursive: true });
  await writeFile(file, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return { pepper: (await readFile(file, 'utf8')).trim(), created: true };
}
