import assert from "node:assert/strict";
import { handshake, RawClient } from "./ws_client.ts";

Deno.test("a RawClient its server hangs up on closes its own socket, unasked", async () => {
  // A server that upgrades, then goes away without a close frame (a
  // killed node): `deno task test`'s resources sanitizer fails this test
  // if the socket stays open.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    await conn.read(new Uint8Array(4096));
    await conn.write(
      new TextEncoder().encode(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n" +
          "connection: Upgrade\r\n\r\n",
      ),
    );
    conn.close();
  })();
  try {
    const { port } = listener.addr as Deno.NetAddr;
    const shake = await handshake(`ws://127.0.0.1:${port}/ws`, "ann", 5_000);
    const ended = Promise.withResolvers<void>();
    const client = new RawClient(shake, {
      onText: () => {},
      onEnd: ended.resolve,
      bufferSize: 4096,
    });
    await ended.promise;
    assert.equal(client.ended, true);
    assert.equal(client.serverCloseCode, null);
  } finally {
    await serving;
    listener.close();
  }
});
