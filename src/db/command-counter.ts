import type { Connection } from 'mongoose';

/** One database command as the driver started it. */
export interface CountedCommand {
  name: string;
  collection: string | undefined;
  /** Which sequential round trip it belongs to: commands started while another was in flight share a number. */
  wave: number;
  /** The filters the command selects documents by (one per statement of an update or delete); none for an insert. */
  filters: Record<string, unknown>[];
}

export interface CommandCount {
  /** Every command sent. */
  commands: CountedCommand[];
  /** Sequential round trips: commands that ran side by side count once. */
  depth: number;
}

export interface CommandCounter {
  /** Counts the commands `work` causes, leaving out those on `ignore`d collections (background writers). */
  count<T>(work: () => Promise<T>, options?: { ignore?: readonly string[] }): Promise<{ result: T } & CommandCount>;
  stop(): void;
}

interface StartedEvent {
  requestId: number;
  commandName: string;
  command: Record<string, unknown>;
}

interface FinishedEvent {
  requestId: number;
}

// Commands the driver sends for itself, not for the code under measurement.
const HOUSEKEEPING = new Set(['hello', 'ismaster', 'isMaster', 'ping', 'saslStart', 'saslContinue', 'endSessions', 'killCursors']);

const isDocument = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Where each command carries its selection: find/count/distinct a `filter` or `query`, update/delete one `q` per statement. */
function filtersOf(name: string, command: Record<string, unknown>): Record<string, unknown>[] {
  const statements = (key: string, field: string) =>
    (Array.isArray(command[key]) ? (command[key] as unknown[]) : []).flatMap((statement) => (isDocument(statement) && isDocument(statement[field]) ? [statement[field]] : []));
  switch (name) {
    case 'find':
      return isDocument(command.filter) ? [command.filter] : [{}];
    case 'findAndModify':
    case 'count':
    case 'distinct':
      return isDocument(command.query) ? [command.query] : [{}];
    case 'update':
      return statements('updates', 'q');
    case 'delete':
      return statements('deletes', 'q');
    case 'aggregate': {
      const first = Array.isArray(command.pipeline) ? (command.pipeline as unknown[])[0] : undefined;
      return [isDocument(first) && isDocument(first.$match) ? first.$match : {}];
    }
    default:
      return [];
  }
}

/**
 * Counts database round trips through the driver's command monitoring. The connection must be opened with
 * `monitorCommands: true` (`connectDatabase(uri, { monitorCommands: true })`; off by default). Counts everything on
 * the connection, so measure one piece of work at a time, or divide a whole run's commands by its requests.
 */
export function createCommandCounter(connection: Connection): CommandCounter {
  const client = connection.getClient();
  // Without it the driver sends no events and every count would be a silent zero.
  if (!client.options.monitorCommands) throw new Error('createCommandCounter needs a connection opened with monitorCommands: true');
  let recording: { commands: CountedCommand[]; inFlight: Set<number>; wave: number; ignore: Set<string> } | undefined;

  const onStarted = (event: StartedEvent) => {
    if (!recording || HOUSEKEEPING.has(event.commandName)) return;
    const target = event.command[event.commandName];
    const collection = typeof target === 'string' ? target : undefined;
    if (collection && recording.ignore.has(collection)) return;
    if (recording.inFlight.size === 0) recording.wave += 1;
    recording.inFlight.add(event.requestId);
    recording.commands.push({ name: event.commandName, collection, wave: recording.wave, filters: filtersOf(event.commandName, event.command) });
  };
  const onFinished = (event: FinishedEvent) => {
    recording?.inFlight.delete(event.requestId);
  };
  client.on('commandStarted', onStarted);
  client.on('commandSucceeded', onFinished);
  client.on('commandFailed', onFinished);

  return {
    async count(work, options = {}) {
      const state = { commands: [] as CountedCommand[], inFlight: new Set<number>(), wave: 0, ignore: new Set(options.ignore ?? []) };
      recording = state;
      try {
        const result = await work();
        return { result, commands: state.commands, depth: state.wave };
      } finally {
        recording = undefined;
      }
    },
    stop() {
      client.off('commandStarted', onStarted);
      client.off('commandSucceeded', onFinished);
      client.off('commandFailed', onFinished);
    },
  };
}
