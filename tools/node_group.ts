/**
 * The servers the load and soak tools start: one, or N nodes of a
 * cluster, each a copy of one command on its own free loopback port with
 * its own temporary history, optionally all given one Redis URL
 * (`--redis URL`, or a `{redis}` placeholder filled in). A node can be
 * killed and restarted on the port it had, with its history: the soak
 * tool's chaos schedule does that. Every step is bounded in time (see
 * server_process.ts).
 *
 * @module
 */

import {
  DATA_DIR_PREFIX,
  needsTempData,
  removeDataDir,
  type ServerProcess,
  startServerProcess,
} from "./server_process.ts";

/** How the nodes are started. */
export interface NodeGroupOptions {
  /** How many copies of the command. Default 1. */
  nodes?: number;
  /** Pin every node to this CPU (taskset); null or absent: unpinned. */
  pin?: number | null;
  /** Add only the port and host, even to a hubchat command. */
  asIs?: boolean;
  /** The Redis URL every node is given, or absent for none. */
  redis?: string;
}

/** One node of a {@linkcode NodeGroup}. */
export interface GroupNode {
  /** Its place in the group, 0-based: clients i go to node i mod N. */
  index: number;
  /** Its WebSocket endpoint (the same across restarts). */
  url: string;
  /** Its port (the same across restarts). */
  port: number;
  /** The running process, or null while it is down (killed). */
  process: ServerProcess | null;
  /**
   * Its history's directory, the same across restarts (removed by
   * {@linkcode NodeGroup.stop}), or null when the command sets its own.
   */
  dataDir: string | null;
  /** Times it was restarted. */
  restarts: number;
  /** Exit codes of its processes that ended (null: ended by a signal). */
  exits: (number | null)[];
}

/**
 * N copies of a server command, started together and stopped together;
 * any one killed and restarted on its own port.
 *
 * @example
 * ```ts
 * import { NodeGroup } from "./node_group.ts";
 * const group = await NodeGroup.start("deno run -A main.ts", { nodes: 2 });
 * console.log(group.urls); // ["ws://127.0.0.1:PORT1/ws", "ws://127.0.0.1:PORT2/ws"]
 * await group.kill(1); // SIGKILL
 * await group.restart(1); // the same port, the same history
 * await group.stop();
 * ```
 */
export class NodeGroup {
  /** The command every node runs. */
  readonly command: string;
  /** The nodes, in order. */
  readonly nodes: readonly GroupNode[];
  #options: NodeGroupOptions;

  private constructor(
    command: string,
    nodes: GroupNode[],
    options: NodeGroupOptions,
  ) {
    this.command = command;
    this.nodes = nodes;
    this.#options = options;
  }

  /**
   * Starts `nodes` copies of `command` at once, each on a free port with a
   * temporary history of its own (a hubchat command setting no `--data`),
   * and resolves once every one printed its URL; if one fails, stops the
   * others, removes every temporary directory and throws its error.
   */
  static async start(
    command: string,
    options: NodeGroupOptions = {},
  ): Promise<NodeGroup> {
    const count = options.nodes ?? 1;
    const tempData = needsTempData(command, options.asIs ?? false);
    const dataDirs: (string | null)[] = [];
    for (let i = 0; i < count; i++) {
      dataDirs.push(
        tempData ? await Deno.makeTempDir({ prefix: DATA_DIR_PREFIX }) : null,
      );
    }
    const started = await Promise.allSettled(
      dataDirs.map((dataDir) =>
        startServerProcess(command, {
          pin: options.pin,
          asIs: options.asIs,
          redis: options.redis,
          dataDir: dataDir ?? undefined,
        })
      ),
    );
    const failed = started.find((s) => s.status === "rejected");
    if (failed !== undefined) {
      await Promise.all(
        started.map((s) =>
          s.status === "fulfilled" ? s.value.stop() : undefined
        ),
      );
      await Promise.all(dataDirs.map(removeDataDir));
      throw (failed as PromiseRejectedResult).reason;
    }
    const nodes = started.map((s, index): GroupNode => {
      const process = (s as PromiseFulfilledResult<ServerProcess>).value;
      return {
        index,
        url: process.url,
        port: process.port,
        process,
        dataDir: dataDirs[index],
        restarts: 0,
        exits: [],
      };
    });
    return new NodeGroup(command, nodes, options);
  }

  /** Every node's URL, in order. */
  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** The pids of the nodes that run now. */
  get pids(): number[] {
    return this.nodes.flatMap((node) =>
      node.process === null ? [] : [node.process.pid]
    );
  }

  /**
   * Ends node `index` with `signal` (default SIGKILL: a crash; SIGKILL
   * after 5 s whatever the signal) and waits until it is gone. Its port
   * and history stay for {@linkcode NodeGroup.restart}.
   */
  async kill(index: number, signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const node = this.#node(index);
    const process = node.process;
    if (process === null) return;
    node.process = null;
    node.exits.push(await process.stop(signal));
  }

  /**
   * Starts node `index` again on its port with its history (killing it
   * with SIGTERM first if it runs); throws an Error if it does not come
   * up (its port taken meanwhile, say), and it stays down.
   */
  async restart(index: number): Promise<void> {
    const node = this.#node(index);
    await this.kill(index, "SIGTERM");
    node.process = await startServerProcess(this.command, {
      pin: this.#options.pin,
      asIs: this.#options.asIs,
      redis: this.#options.redis,
      dataDir: node.dataDir ?? undefined,
      port: node.port,
    });
    node.restarts++;
  }

  /**
   * Stops every node that runs (SIGTERM, SIGKILL after 5 s) and removes
   * their temporary histories; resolves with each node's last exit code.
   */
  async stop(): Promise<(number | null)[]> {
    await Promise.all(
      this.nodes.map((node) => this.kill(node.index, "SIGTERM")),
    );
    await Promise.all(this.nodes.map((node) => removeDataDir(node.dataDir)));
    return this.nodes.map((node) => node.exits.at(-1) ?? null);
  }

  #node(index: number): GroupNode {
    const node = this.nodes[index];
    if (node === undefined) {
      throw new Error(
        `node ${index} does not exist; expected 0 to ${this.nodes.length - 1}`,
      );
    }
    return node;
  }
}
