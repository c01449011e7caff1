/**
 * What shared files cost hubchat: upload throughput, and the server's
 * memory while it refuses a 1 GiB upload. Starts `main.ts` in a child
 * process (files in a temporary folder, removed after), joins one client,
 * uploads `--uploads` files of `--size` MiB one after another over HTTP
 * (each a new random content, so each is hashed and stored), then offers
 * 1 GiB twice over raw TCP, once with a `Content-Length` and once chunked,
 * sampling the child's RSS every 20 ms.
 *
 * ```sh
 * deno run -A bench/files.ts --uploads 20 --size 10
 * ```
 *
 * Prints one JSON summary on stdout.
 *
 * @module
 */

import { type Flag, helpRows, readFlags, UsageError } from "../flags.ts";
import { ChatClient } from "../testing/chat_client.ts";
import { ChildServer } from "../testing/child_server.ts";
import { offerUpload } from "../testing/raw_upload.ts";

const FLAGS: readonly Flag[] = [
  {
    name: "uploads",
    kind: "whole",
    min: 1,
    value: "N",
    default: 20,
    help: "uploads timed, one after another",
  },
  {
    name: "size",
    kind: "whole",
    min: 1,
    max: 1024,
    value: "MIB",
    default: 10,
    help: "size of each upload, in MiB (the server's limit is raised to fit)",
  },
];

const MIB = 1024 * 1024;

/** `size` random bytes (a new content each time: nothing is deduplicated). */
function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)));
  }
  return bytes;
}

const mib = (bytes: number): number => Math.round(bytes / MIB * 10) / 10;

async function main(): Promise<void> {
  const read = readFlags(FLAGS, Deno.args);
  if (read.help) {
    console.log(
      `Usage: deno run -A bench/files.ts [options]\n\n${helpRows(FLAGS)}`,
    );
    return;
  }
  const uploads = read.values.uploads as number;
  const size = (read.values.size as number) * MIB;
  const dir = await Deno.makeTempDir({ prefix: "hubchat-files-bench-" });
  const server = await ChildServer.start([
    "--files",
    dir,
    "--upload-rate",
    "0",
    "--max-file-size",
    String(size),
    "--files-max-bytes",
    String(Math.max(1024 * MIB, size * 2)),
  ]);
  const client = await ChatClient.join(server.port, "bench");
  try {
    const session = client.welcome!.session;
    const bodies = [randomBytes(size), randomBytes(size)];
    let seconds = 0;
    const startRss = server.rss();
    let peak = startRss;
    for (let i = 0; i < uploads; i++) {
      // Two bodies alternate, a byte changed each time: always new content.
      const body = bodies[i % 2];
      body[0] = i & 0xff;
      body[1] = i >> 8;
      const started = performance.now();
      const sent = fetch(`${server.url}files?room=lobby`, {
        method: "POST",
        body,
        headers: {
          authorization: `Bearer ${session}`,
          "x-filename": `bench-${i}.bin`,
        },
      }).then(async (response) => {
        if (response.status !== 201) {
          throw new Error(
            `upload ${i}: ${response.status} ${await response.text()}`,
          );
        }
        await response.body?.cancel();
      });
      peak = Math.max(peak, await server.peakRss(sent));
      await sent;
      seconds += (performance.now() - started) / 1000;
    }
    const refusals = [];
    for (const chunked of [false, true]) {
      const before = server.rss();
      const offer = offerUpload({
        port: server.port,
        path: "/files?room=lobby",
        headers: { authorization: `Bearer ${session}` },
        total: 1024 ** 3,
        chunked,
      });
      const offerPeak = await server.peakRss(offer);
      const result = await offer;
      refusals.push({
        offered: chunked ? "1 GiB chunked" : "1 GiB with Content-Length",
        status: result.status,
        closed: result.closed,
        takenMiB: mib(result.sent),
        rssBeforeMiB: mib(before),
        rssPeakMiB: mib(offerPeak),
      });
    }
    console.log(JSON.stringify(
      {
        uploads,
        sizeMiB: size / MIB,
        seconds: Math.round(seconds * 1000) / 1000,
        mibPerSecond: Math.round(uploads * size / MIB / seconds * 10) / 10,
        rssStartMiB: mib(startRss),
        rssPeakWhileUploadingMiB: mib(peak),
        refusals,
      },
      null,
      2,
    ));
  } finally {
    await client.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bench/files.ts: ${error.message}`);
    Deno.exit(2);
  }
}
