// better-auth 1.x as npm run bench:compare runs it: the phone-number plugin, the MongoDB adapter on the same engine
// as Chatgate, rate limits off, codes delivered to the bench's sink (awaited, like Chatgate's HTTP SMS provider).
// Prints "listening PORT".
/* global fetch -- Node's own */
import { createServer } from 'node:http';
import { betterAuth } from 'better-auth';
import { mongodbAdapter } from 'better-auth/adapters/mongodb';
import { toNodeHandler } from 'better-auth/node';
import { phoneNumber } from 'better-auth/plugins';
import { MongoClient } from 'mongodb';

const client = new MongoClient(process.env.MONGODB_URI, { directConnection: true });
await client.connect();
const smsUrl = process.env.SMS_HTTP_URL;

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;

const auth = betterAuth({
  baseURL: `http://127.0.0.1:${port}`,
  secret: 'bench-secret-bench-secret-bench-secret',
  // No client passed: the embedded engines have no transactions.
  database: mongodbAdapter(client.db()),
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  plugins: [
    phoneNumber({
      sendOTP: async ({ phoneNumber: to, code }) => {
        await fetch(smsUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to, code }) });
      },
      signUpOnVerification: { getTempEmail: (phone) => `${phone.replace('+', '')}@bench.invalid`, getTempName: (phone) => phone },
    }),
  ],
});
server.on('request', toNodeHandler(auth));
process.on('SIGTERM', () => {
  server.close();
  void client.close().then(() => process.exit(0));
});
console.log(`listening ${port}`);
