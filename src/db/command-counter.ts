import type { Connection } from 'mongoose';

/** One database command as the driver started it. */
export interface CountedCommand {
  name: string;
  collection: string | undefined;
  /** Which sequential round trip it belongs to: commands started while another was in flight share a number. */
  wave: number;
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
    recording.commands.push({ name: event.commandName, collection, wave: recording.wave });
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
