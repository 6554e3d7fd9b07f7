// A bare Fastify hello world (no logger, no plugins), the yardstick for /health. Prints "listening PORT".
import Fastify from 'fastify';

const app = Fastify();
app.get('/health', async () => ({ status: 'ok' }));
await app.listen({ host: '127.0.0.1', port: 0 });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
console.log(`listening ${app.server.address().port}`);
