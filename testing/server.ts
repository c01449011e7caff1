/**
 * A hubchat server started in the test process for the length of one test,
 * with everything the test opened closed after it.
 *
 * @module
 */

import { type ChatServer, type ServerOptions, startServer } from "../server.ts";
import { within } from "./wait.ts";

/**
 * A thing a test opened and {@linkcode withServer} closes after it, most
 * recent first: a client, a raw socket, a child process.
 */
export interface Closer {
  /** Closes the thing and waits for it to be closed. */
  close(): Promise<unknown>;
}

/**
 * Starts a server on 127.0.0.1, port 0, runs `body`, then closes everything
 * `body` tracked and shuts the server down, even when `body` throws.
 *
 * @example
 * ```ts
 * import { ChatClient } from "./chat_client.ts";
 * import { withServer } from "./server.ts";
 * await withServer({}, async (server, track) => {
 *   const ann = track(await ChatClient.join(server.port, "ann"));
 *   ann.say("hi");
 * });
 * ```
 */
export async function withServer(
  options: ServerOptions,
  body: (
    server: ChatServer,
    track: <T extends Closer>(closer: T) => T,
  ) => Promise<void>,
): Promise<void> {
  const server = await startServer({
    ...options,
    port: 0,
    hostname: "127.0.0.1",
  });
  const closers: Closer[] = [];
  function track<T extends Closer>(closer: T): T {
    closers.push(closer);
    return closer;
  }
  let failure: { error: unknown } | undefined;
  try {
    await body(server, track);
  } catch (error) {
    failure = { error };
  }
  const errors: unknown[] = [];
  for (const closer of closers.reverse()) {
    try {
      await closer.close();
    } catch (error) {
      errors.push(error);
    }
  }
  try {
    await within(server.shutdown(), "server shutdown", 10_000);
  } catch (error) {
    errors.push(error);
  }
  if (failure) throw failure.error;
  if (errors.length > 0) throw new AggregateError(errors, "cleanup failed");
}
