/**
 * A route's hooks of one kind with `hook` added after the ones it declared itself (Fastify's `onRoute` hands them over
 * as undefined, one function or a list). For wiring a hook to some routes only, decided once when each is added.
 */
export function withHookAdded<Hook>(existing: Hook | readonly Hook[] | undefined, hook: NoInfer<Hook>): Hook[] {
  if (existing === undefined) return [hook];
  return [...(Array.isArray(existing) ? (existing as readonly Hook[]) : [existing as Hook]), hook];
}
