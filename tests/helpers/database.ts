import { randomBytes } from 'node:crypto';
import { afterAll, inject } from 'vitest';
import { connectDatabase, type Database } from '../../src/db/connection.js';

/** A fresh database on the suite's real server, dropped when the file's tests are done. */
export async function connectTestDatabase(): Promise<Database> {
  const database = await connectDatabase(inject('mongoUri'), {
    dbName: `chatgate_test_${randomBytes(6).toString('hex')}`,
    // Round trips are counted in tests (tests/round-trips.test.ts).
    monitorCommands: true,
  });
  afterAll(async () => {
    await database.connection.dropDatabase().catch(() => undefined);
    await database.close();
  });
  return database;
}
