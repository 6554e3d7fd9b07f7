import type { TestProject } from 'vitest/node';
import { startEmbeddedDatabase, type EmbeddedDatabase, type EmbeddedOptions } from '../../src/db/embedded.js';

// One real MongoDB-wire server for the whole run: TEST_MONGODB_URI if given, else the same embedded engine
// the gateway uses (EMBEDDED_DB_ENGINE, default auto: mongod where a binary can be had, else mongo-java-server). Each test file gets its own database.
let embedded: EmbeddedDatabase | undefined;

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string;
    mongoEngine: string;
  }
}

export async function setup(project: TestProject): Promise<void> {
  let uri = process.env.TEST_MONGODB_URI;
  let description = `external server (${uri})`;
  if (!uri) {
    embedded = await startEmbeddedDatabase({
      engine: (process.env.EMBEDDED_DB_ENGINE as EmbeddedOptions['engine'] | undefined) ?? 'auto',
      dataDir: undefined,
      ferretdbBin: process.env.FERRETDB_BIN,
      log: (message) => console.log(`[test database] ${message}`),
    });
    uri = embedded.uri;
    description = embedded.description;
  }
  console.log(`[test database] tests run against ${description}`);
  project.provide('mongoUri', uri);
  project.provide('mongoEngine', description);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
}
