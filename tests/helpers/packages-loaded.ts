// Run as its own process (tests/lazy-loading.test.ts): builds the gateway with the environment it is given, asks it
// for the paths in VISIT (comma-separated) if any, and prints as JSON every npm package loaded by then. A fresh
// process, so that nothing another test loaded counts.
import { registerHooks } from 'node:module';

const loaded = new Set<string>();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    const name = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(resolved.url)?.[1];
    if (name) loaded.add(name);
    return resolved;
  },
});

const { buildApp } = await import('../../src/app.js');
const { loadConfig } = await import('../../src/config.js');
const { connectDatabase } = await import('../../src/db/connection.js');
const { generateSigningJwks, importSigningKeys } = await import('../../src/services/signing-keys.js');

const database = await connectDatabase(process.env.TEST_MONGODB_URI!, { dbName: 'chatgate_test_packages_loaded' });
const keys = await importSigningKeys(await generateSigningJwks('ES256'), 'ES256');
const app = await buildApp({ config: loadConfig({ ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'silent' }), database, keys, pepper: 'test-pepper-that-is-long-enough-0123456789' });
await app.ready();
for (const url of process.env.VISIT?.split(',') ?? []) {
  const answer = await app.inject({ method: 'GET', url });
  if (answer.statusCode >= 400) throw new Error(`GET ${url}: ${answer.statusCode}`);
}
process.stdout.write(JSON.stringify([...loaded].sort()));
await app.close();
await database.connection.dropDatabase();
await database.close();
