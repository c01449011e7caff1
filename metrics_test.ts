import assert from "node:assert/strict";
import {
  Counter,
  MAX_BUCKETS,
  MAX_LABEL_VALUES,
  OVERFLOW_LABEL_VALUE,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
} from "./metrics.ts";

Deno.test("a small registry renders exactly", () => {
  const registry = new Registry();
  const connections = registry.counter(
    "hubchat_connections_total",
    "WebSocket connections accepted.",
  );
  const errors = registry.counter(
    "hubchat_errors_total",
    "Frames refused, by error code.",
    ["code"],
  );
  const clients = registry.gauge("hubchat_clients", "Clients connected.");
  let rooms = 1;
  registry.gauge("hubchat_rooms", "Rooms open.", () => rooms);
  const latency = registry.histogram(
    "hubchat_broadcast_seconds",
    "Time to fan one message out.",
    [0.001, 0.01, 0.1],
  );

  connections.inc();
  connections.inc(undefined, 2);
  errors.inc("invalid_json");
  errors.inc("empty_text", 0);
  errors.inc("invalid_json");
  clients.set(5);
  clients.inc();
  clients.dec(2);
  rooms = 3;
  for (const seconds of [0.0005, 0.001, 0.002, 0.05, 0.05, 7]) {
    latency.observe(seconds);
  }

  assert.equal(
    registry.render(),
    `# HELP hubchat_connections_total WebSocket connections accepted.
# TYPE hubchat_connections_total counter
hubchat_connections_total 3
# HELP hubchat_errors_total Frames refused, by error code.
# TYPE hubchat_errors_total counter
hubchat_errors_total{code="empty_text"} 0
hubchat_errors_total{code="invalid_json"} 2
# HELP hubchat_clients Clients connected.
# TYPE hubchat_clients gauge
hubchat_clients 4
# HELP hubchat_rooms Rooms open.
# TYPE hubchat_rooms gauge
hubchat_rooms 3
# HELP hubchat_broadcast_seconds Time to fan one message out.
# TYPE hubchat_broadcast_seconds histogram
hubchat_broadcast_seconds_bucket{le="0.001"} 2
hubchat_broadcast_seconds_bucket{le="0.01"} 3
hubchat_broadcast_seconds_bucket{le="0.1"} 5
hubchat_broadcast_seconds_bucket{le="+Inf"} 6
hubchat_broadcast_seconds_sum 7.1035
hubchat_broadcast_seconds_count 6
`,
  );
  assert.equal(connections.get(), 3);
  assert.equal(errors.get("invalid_json"), 2);
  assert.equal(errors.get("never"), 0);
  assert.equal(latency.count, 6);
  assert.equal(
    PROMETHEUS_CONTENT_TYPE,
    "text/plain; version=0.0.4; charset=utf-8",
  );
});

Deno.test("an empty registry and an empty histogram render", () => {
  assert.equal(new Registry().render(), "");
  const registry = new Registry();
  registry.histogram("h", "Nothing yet.", [1]);
  registry.counter("c_total", "No label values yet.", ["code"]);
  assert.equal(
    registry.render(),
    `# HELP h Nothing yet.
# TYPE h histogram
h_bucket{le="1"} 0
h_bucket{le="+Inf"} 0
h_sum 0
h_count 0
# HELP c_total No label values yet.
# TYPE c_total counter
`,
  );
});

Deno.test("label values and help text are escaped", () => {
  const registry = new Registry();
  const counter = registry.counter(
    "odd_total",
    'Help with a \\ backslash,\na newline and "quotes".',
    ["value"],
  );
  counter.inc('a"b\\c\nd');
  assert.equal(
    registry.render(),
    `# HELP odd_total Help with a \\\\ backslash,\\na newline and "quotes".
# TYPE odd_total counter
odd_total{value="a\\"b\\\\c\\nd"} 1
`,
  );
});

Deno.test("special values render as +Inf, -Inf and NaN", () => {
  const registry = new Registry();
  const gauge = registry.gauge("g", "A gauge.");
  const lines: string[] = [];
  for (const value of [Infinity, -Infinity, NaN, -1.5, 1e21]) {
    gauge.set(value);
    lines.push(registry.render().split("\n")[2]);
  }
  assert.deepEqual(lines, ["g +Inf", "g -Inf", "g NaN", "g -1.5", "g 1e+21"]);
});

Deno.test("histogram: bounds are inclusive, NaN is ignored", () => {
  const registry = new Registry();
  const histogram = registry.histogram("h", "H.", [1, 2]);
  histogram.observe(1); // le="1": upper bounds are inclusive
  histogram.observe(-5);
  histogram.observe(2.0000001);
  histogram.observe(NaN);
  histogram.observe(Infinity);
  assert.equal(histogram.count, 4);
  assert.match(
    registry.render(),
    /h_bucket\{le="1"\} 2\nh_bucket\{le="2"\} 2\nh_bucket\{le="\+Inf"\} 4\nh_sum \+Inf\nh_count 4\n$/,
  );
});

Deno.test("misuse is refused with a reason", () => {
  const registry = new Registry();
  assert.throws(() => registry.counter("bad-name", "x"), /invalid/);
  assert.throws(() => registry.counter("9lives", "x"), /invalid/);
  registry.counter("dup_total", "x");
  assert.throws(() => registry.gauge("dup_total", "x"), /already registered/);
  assert.throws(
    () => registry.counter("l_total", "x", ["__reserved"]),
    /label name/,
  );
  assert.throws(
    // @ts-expect-error: two labels are refused by the types too
    () => registry.counter("two_total", "x", ["a", "b"]),
    /expected at most one/,
  );
  assert.throws(() => registry.histogram("h0", "x", []), /expected 1 to 15/);
  assert.throws(
    () =>
      registry.histogram(
        "h16",
        "x",
        Array.from({ length: MAX_BUCKETS + 1 }, (_, i) => i),
      ),
    /16 buckets/,
  );
  assert.throws(() => registry.histogram("hd", "x", [1, 1]), /increasing/);
  assert.throws(() => registry.histogram("hi", "x", [1, Infinity]), /finite/);

  const plain = registry.counter("plain_total", "x");
  assert.throws(() => plain.inc("label"), /has no label/);
  assert.throws(() => plain.inc(undefined, -1), /expected a finite number/);
  assert.throws(() => plain.inc(undefined, NaN), RangeError);
  const labelled = registry.counter("labelled_total", "x", ["code"]);
  assert.throws(() => labelled.inc(), /needs a value for label "code"/);
});

Deno.test("label values beyond the cap fold into one series", () => {
  const counter = new Counter("c_total", "x", ["v"]);
  for (let i = 0; i < MAX_LABEL_VALUES + 10; i++) counter.inc(`v${i}`);
  counter.inc("v0"); // known values keep counting
  assert.equal(counter.get("v0"), 2);
  assert.equal(counter.get(`v${MAX_LABEL_VALUES + 5}`), 0);
  assert.equal(counter.get(OVERFLOW_LABEL_VALUE), 10);
  const lines: string[] = [];
  counter.renderTo(lines);
  assert.equal(lines.length, 2 + MAX_LABEL_VALUES + 1);
});
