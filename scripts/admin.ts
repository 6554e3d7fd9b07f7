// The admin CLI: `npm run admin -- <command> ...`. It talks to the gateway's database directly (MONGODB_URI, or
// MONGODB_URI_FILE), through the same service functions as the admin API, so it works with the API off.
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { auditEventTypes } from '../models/audit-event.js';
import { parseSince } from '../src/admin/routes.js';
import { createAdminService, type Actor, type UserQuery } from '../src/admin/service.js';
import { systemClock } from '../src/clock.js';
import { connectDatabase } from '../src/db/connection.js';
import { AppError } from '../src/errors.js';
import { createAuditTrail, type AuditType } from '../src/services/audit.js';

const usage = `Usage: npm run admin -- <command> [options]   (needs MONGODB_URI: the gateway's database)

  users:find --phone <+E164> | --telegram-id <id> | --wa-id <id> | --id <userId>
  users:show <userId>
  users:block <userId> --reason <text> [--until <ISO date or duration such as 7d>]
  users:unblock <userId>
  sessions:revoke <userId>                 sign the user out everywhere
  session:revoke <sessionId>
  audit [--user <userId>] [--phone <+E164>] [--type <type>] [--since <1h|7d|ISO date>] [--limit <n>] [--cursor <c>]

  --json   print JSON instead of text`;

const options = {
  phone: { type: 'string' },
  'telegram-id': { type: 'string' },
  'wa-id': { type: 'string' },
  id: { type: 'string' },
  reason: { type: 'string' },
  until: { type: 'string' },
  user: { type: 'string' },
  type: { type: 'string' },
  since: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

type Printable = Record<string, unknown>;

function text(value: unknown, indent = ''): string {
  if (value === null || value === undefined) return '-';
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : value.map((item) => `\n${indent}- ${text(item, `${indent}  `)}`).join('');
  if (typeof value === 'object') {
    return Object.entries(value as Printable)
      .map(([key, item]) => `\n${indent}${key}: ${text(item, `${indent}  `)}`)
      .join('');
  }
  return String(value as string | number | boolean);
}

function databaseUri(): string {
  const file = process.env.MONGODB_URI_FILE;
  const uri = file ? readFileSync(file, 'utf8').replace(/\r?\n$/, '') : process.env.MONGODB_URI;
  if (!uri || !/^mongodb(\+srv)?:\/\//.test(uri)) throw new AppError('invalid_request', 'Set MONGODB_URI (or MONGODB_URI_FILE) to the gateway\'s database URI.');
  return uri;
}

function userQuery(values: Record<string, string | boolean | undefined>): UserQuery {
  const given = [
    values.phone !== undefined && { phone: String(values.phone) },
    values['telegram-id'] !== undefined && { telegramId: Number(values['telegram-id']) },
    values['wa-id'] !== undefined && { waId: String(values['wa-id']) },
    values.id !== undefined && { id: String(values.id) },
  ].filter((query): query is UserQuery => !!query);
  if (given.length !== 1) throw new AppError('invalid_request', 'users:find takes exactly one of --phone, --telegram-id, --wa-id, --id.');
  return given[0]!;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true });
  const [command, target] = positionals;
  if (values.help || !command) {
    console.log(usage);
    return command || values.help ? 0 : 2;
  }
  const needTarget = (what: string): string => {
    if (!target) throw new AppError('invalid_request', `${command} needs the ${what}.`);
    return target;
  };
  const database = await connectDatabase(databaseUri());
  const audit = createAuditTrail(database.models.AuditEvent, systemClock, (error) => console.error('audit write failed:', error));
  try {
    const admin = createAdminService({ models: database.models, audit, clock: systemClock });
    const actor: Actor = { via: 'cli', name: userInfo().username };
    let result: unknown;
    switch (command) {
      case 'users:find':
        result = { users: await admin.findUsers(userQuery(values), actor) };
        break;
      case 'users:show':
        result = await admin.getUser(needTarget('user id'), actor);
        break;
      case 'users:block': {
        if (!values.reason) throw new AppError('invalid_request', 'users:block needs --reason.');
        const until = values.until === undefined ? undefined : parseUntil(values.until);
        result = await admin.blockUser(needTarget('user id'), { reason: values.reason, until }, actor);
        break;
      }
      case 'users:unblock':
        result = await admin.unblockUser(needTarget('user id'), actor);
        break;
      case 'sessions:revoke':
        result = await admin.revokeUserSessions(needTarget('user id'), actor);
        break;
      case 'session:revoke':
        result = await admin.revokeSession(needTarget('session id'), actor);
        break;
      case 'audit': {
        const since = values.since === undefined ? undefined : parseSince(values.since, systemClock.now());
        if (values.since !== undefined && !since) throw new AppError('invalid_request', '--since: a duration such as 1h or 7d, or an ISO date.');
        if (values.type !== undefined && !(auditEventTypes as readonly string[]).includes(values.type)) {
          throw new AppError('invalid_request', `--type: one of ${auditEventTypes.join(', ')}.`);
        }
        result = await admin.listAudit(
          {
            userId: values.user,
            phone: values.phone,
            type: values.type as AuditType | undefined,
            since,
            cursor: values.cursor,
            limit: values.limit === undefined ? undefined : Number(values.limit),
          },
          actor,
        );
        break;
      }
      default:
        console.error(`Unknown command "${command}".\n\n${usage}`);
        return 2;
    }
    console.log(values.json ? JSON.stringify(result, null, 2) : text(result).trimStart());
    return 0;
  } finally {
    // Audit events are written in batches: every one of this command's goes out before the connection closes.
    await audit.close();
    await database.close();
  }
}

// `--until` takes a date or a duration from now (7d).
function parseUntil(value: string): Date {
  const relative = /^(\d{1,6})([smhd])$/.exec(value);
  if (relative) {
    const ago = parseSince(value, systemClock.now())!;
    return new Date(2 * systemClock.now().getTime() - ago.getTime());
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new AppError('invalid_request', '--until: an ISO date or a duration such as 7d.');
  return date;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof AppError ? `${error.code}: ${error.message}` : error);
    process.exitCode = 1;
  },
);
