import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * For routes whose answers carry tokens or codes: no browser, proxy or CDN may keep a copy. Set before the handler
 * runs, so an error answer of the same route carries them too.
 */
export async function noStore(_request: FastifyRequest, reply: FastifyReply): Promise<void> {
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}
