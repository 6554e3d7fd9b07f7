import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { connectDatabase } from '../src/db/connection.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';

describe('the embedded database', () => {
  it('keeps its data in DATA_DIR across restarts', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'chatgate-embedded-'));
    // The same engine the suite runs on (FerretDB where no mongod binary can be had).
    const engine = inject('mongoEngine').startsWith('mongod') ? 'mongod' : 'ferretdb';
    const first = await startEmbeddedDatabase({ engine, dataDir, log: () => undefined });
    let database = await connectDatabase(first.uri, { dbName: 'chatgate' });
    await database.models.User.create({ phone: '+919812345678' });
    await database.close();
    await first.stop();

    const second = await startEmbeddedDatabase({ engine, dataDir, log: () => undefined });
    database = await connectDatabase(second.uri, { dbName: 'chatgate' });
    expect(await database.models.User.countDocuments({ phone: '+919812345678' })).toBe(1);
    await database.close();
    await second.stop();
  });

  it('says what to set when no engine can start', async () => {
    const failing = startEmbeddedDatabase({ engine: 'ferretdb', dataDir: undefined, ferretdbBin: '/nonexistent/ferretdb', log: () => undefined });
    await expect(failing).rejects.toThrow(/Set MONGODB_URI/);
  });
});
