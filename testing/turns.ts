/**
 * Event-loop turns a test steps by hand: a {@linkcode TurnScheduler} for
 * the upgrade pacer whose turns end only when the test says so, so that
 * what waits, and in which order it goes, is certain.
 *
 * @module
 */

import type { TurnScheduler } from "../pacer.ts";

/**
 * Turns that end when {@linkcode ManualTurns.end} is called, not by
 * themselves; `scheduled` says how many ends are asked for and not yet
 * run nor cancelled (a closed pacer must leave none).
 *
 * @example
 * ```ts
 * import { UpgradePacer } from "../pacer.ts";
 * import { ManualTurns } from "./turns.ts";
 * const turns = new ManualTurns();
 * const pacer = new UpgradePacer({ perTurn: 1, schedule: turns.schedule });
 * pacer.take("a"); // "go"
 * const b = pacer.take("b"); // waits
 * turns.end(); // b goes
 * await b; // "go"
 * pacer.close();
 * ```
 */
export class ManualTurns {
  #pending = new Set<() => void>();

  /** The scheduler to hand the pacer. */
  readonly schedule: TurnScheduler = (turn) => {
    const entry = (): void => turn();
    this.#pending.add(entry);
    return () => {
      this.#pending.delete(entry);
    };
  };

  /** Turn ends asked for and not yet run nor cancelled. */
  get scheduled(): number {
    return this.#pending.size;
  }

  /** Ends the turn: runs what was scheduled before this call, in order. */
  end(): void {
    const due = [...this.#pending];
    this.#pending.clear();
    for (const run of due) run();
  }
}
