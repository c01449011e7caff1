import assert from "node:assert/strict";
import {
  describeConnectErrors,
  formatCount,
  judgeRun,
  type RunOutcome,
} from "./verdict.ts";

/** A run where everything went right. */
const CLEAN: RunOutcome = {
  clients: 100,
  connected: 100,
  connectErrors: {},
  deliveries: 1_234_567,
  lost: 0,
  duplicated: 0,
  outOfOrder: 0,
  aborted: null,
};

/** hubchat's answer to the 21st connection from one address. */
const TOO_MANY = "429 Too Many Requests too many connections from your address";

Deno.test("judgeRun: a clean run passes, with its counts", () => {
  assert.deepEqual(judgeRun(CLEAN), {
    pass: true,
    line:
      "PASS: 100 clients, 1,234,567 deliveries, nothing lost, duplicated or reordered",
  });
  assert.equal(
    judgeRun({
      ...CLEAN,
      stalled: { clients: 2, connected: 2, connectErrors: {} },
    }).line,
    "PASS: 100 clients (and 2 stalled), 1,234,567 deliveries, nothing lost, duplicated or reordered",
  );
  assert.equal(
    judgeRun({ ...CLEAN, deliveries: 0, idleSeconds: 10 }).line,
    "PASS: 100 clients, held idle for 10 s, none closed by the server",
  );
});

Deno.test("judgeRun: refusals name their status, other failures their message", () => {
  assert.deepEqual(
    judgeRun({ ...CLEAN, connected: 97, connectErrors: { [TOO_MANY]: 3 } }),
    { pass: false, line: "FAIL: 3 of 100 clients refused (429 ×3); 0 lost" },
  );
  assert.equal(
    judgeRun({
      ...CLEAN,
      connected: 94,
      connectErrors: {
        [TOO_MANY]: 3,
        "503 Service Unavailable the server is full": 1,
        "timeout waiting for welcome": 2,
      },
    }).line,
    "FAIL: 6 of 100 clients did not connect " +
      "(429 ×3, timeout waiting for welcome ×2, 503 ×1); 0 lost",
  );
  assert.equal(
    judgeRun({
      ...CLEAN,
      stalled: { clients: 2, connected: 1, connectErrors: { [TOO_MANY]: 1 } },
    }).line,
    "FAIL: 1 of 2 stalled clients refused (429 ×1); 0 lost",
  );
});

/** Runs that fail, each with its verdict line. */
const FAILURES: [Partial<RunOutcome>, string][] = [
  [
    { lost: 12, duplicated: 3, outOfOrder: 1 },
    "FAIL: 12 lost, 3 duplicated, 1 out of order",
  ],
  [{ duplicated: 1 }, "FAIL: 1 duplicated"],
  [
    {
      lost: 5000,
      closedByServer: { "4008": 2 },
      serverErrors: { rate_limited: 40 },
    },
    "FAIL: 2 clients closed by the server (4008 ×2); " +
    "40 errors from the server (rate_limited ×40); 5,000 lost",
  ],
  [
    {
      connected: 0,
      connectErrors: { "Connection refused (os error 111)": 100 },
      aborted: "no client connected",
    },
    "FAIL: aborted: no client connected; 100 of 100 clients did not " +
    "connect (Connection refused (os error 111) ×100); 0 lost",
  ],
  [
    { interrupted: "cut short after 3 s of 30 min" },
    "FAIL: cut short after 3 s of 30 min; 0 lost",
  ],
];

Deno.test("judgeRun: loss, duplicates, disorder, evictions, server errors, aborts and cuts all fail", () => {
  for (const [change, line] of FAILURES) {
    assert.deepEqual(judgeRun({ ...CLEAN, ...change }), { pass: false, line });
  }
  // Empty records are no reason.
  assert.equal(
    judgeRun({ ...CLEAN, closedByServer: {}, serverErrors: {} }).pass,
    true,
  );
});

Deno.test("describeConnectErrors and formatCount", () => {
  assert.deepEqual(describeConnectErrors({}), {
    text: "",
    refused: 0,
    total: 0,
  });
  assert.deepEqual(
    describeConnectErrors({
      [TOO_MANY]: 1,
      "429 Too Many Requests another wording": 2,
      "server closed during the handshake": 1,
    }),
    {
      text: "429 ×3, server closed during the handshake ×1",
      refused: 3,
      total: 4,
    },
  );
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(1_234_567), "1,234,567");
});
