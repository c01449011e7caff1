/**
 * Shared files in the page (home.html), in headless Chromium: one page
 * uploads with the attach button and the others show the image inline or
 * the file as a download chip; drop and paste upload too; a direct
 * message's image reaches its two parties only; refusals show in place.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  browserTest,
  type BrowserTestContext,
  type Page,
  waitFor,
} from "./testing/browser.ts";

const js = JSON.stringify;

/** A real 2×2 PNG (red, green, blue, white), so the page can decode it. */
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEklEQVR4nGP4z8DAAMIM/4EAAB/uBfsL2WiLAAAAAElFTkSuQmCC",
  ),
  (c) => c.charCodeAt(0),
);

/** A small PDF-looking file (the server serves it as an attachment). */
const PDF = new TextEncoder().encode("%PDF-1.4\n% a tiny document\n%%EOF\n");

/**
 * Writes `bytes` to a temporary file named `name`, removed when the test
 * ends (the page reads it when it uploads); returns its path.
 */
async function tempFile(
  track: BrowserTestContext["track"],
  name: string,
  bytes: Uint8Array,
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "hubchat-upload-" });
  track({ close: () => Deno.remove(dir, { recursive: true }) });
  const path = `${dir}/${name}`;
  await Deno.writeFile(path, bytes);
  return path;
}

/** Presses the attach button and picks `path` in the file chooser it opens. */
async function attach(page: Page, path: string): Promise<void> {
  const [chooser] = await Promise.all([
    page.waitForFileChooser(),
    page.click("#attach"),
  ]);
  await chooser.accept([path]);
}

/** Waits until a file line by `user` for `name` is shown, as a thumbnail or a chip. */
async function waitForFile(
  page: Page,
  user: string,
  selector: string,
  what: string,
): Promise<void> {
  await waitFor(
    page,
    `!!document.querySelector(${
      js(`#log .msg[data-type="file"][data-user="${user}"] ${selector}`)
    })`,
    { what },
  );
}

/** True once the thumbnail's image decoded (its natural size is known). */
const THUMB_LOADED = (user: string) =>
  `(() => { const img = document.querySelector(${
    js(`#log .msg[data-type="file"][data-user="${user}"] .file-thumb img`)
  }); return !!img && img.complete && img.naturalWidth === 2; })()`;

browserTest(
  "an image uploaded with the attach button shows inline on another page",
  async ({ join, server, track }) => {
    const ann = await join("ann");
    const bob = await join("bob");
    const path = await tempFile(track, "red dot.png", PNG);
    await attach(ann, path);
    for (const [page, who] of [[bob, "bob"], [ann, "ann"]] as const) {
      await waitForFile(
        page,
        "ann",
        ".file-thumb img",
        `the thumbnail on ${who}'s page`,
      );
      await waitFor(page, THUMB_LOADED("ann"), {
        what: `the image decoded on ${who}'s page`,
      });
    }
    const link = await bob.evaluate(
      `(() => { const a = document.querySelector("#log .file-thumb"); return { href: a.getAttribute("href"), target: a.target, alt: a.querySelector("img").alt }; })()`,
    ) as { href: string; target: string; alt: string };
    assert.match(link.href, /^\/files\/[0-9a-f]{32}$/);
    assert.equal(link.target, "_blank");
    assert.equal(link.alt, "red dot.png");
    // Full size is the file itself, served inline as an image.
    const full = await fetch(new URL(link.href, server.url));
    assert.equal(full.headers.get("content-type"), "image/png");
    assert.match(full.headers.get("content-disposition")!, /^inline/);
    assert.deepEqual(new Uint8Array(await full.arrayBuffer()), PNG);
    // The progress row is gone once shared.
    await waitFor(
      ann,
      `document.querySelectorAll("#uploads .upload").length === 0`,
      {
        what: "the upload row to go",
      },
    );
  },
);

browserTest(
  "a PDF shows as a download chip with its name and size",
  async ({ join, track }) => {
    const ann = await join("ann");
    const bob = await join("bob");
    const path = await tempFile(track, "report.pdf", PDF);
    await attach(ann, path);
    await waitForFile(bob, "ann", ".file-chip", "the chip on bob's page");
    const chip = await bob.evaluate(
      `(() => { const a = document.querySelector("#log .file-chip"); return { tag: a.tagName, href: a.getAttribute("href"), download: a.download, name: a.querySelector(".chip-name").textContent, size: a.querySelector(".chip-size").textContent }; })()`,
    ) as Record<string, string>;
    assert.equal(chip.tag, "A");
    assert.match(chip.href, /^\/files\/[0-9a-f]{32}$/);
    assert.equal(chip.download, "report.pdf");
    assert.equal(chip.name, "report.pdf");
    assert.equal(chip.size, `${PDF.length} B`);
    assert.equal(
      await bob.evaluate(
        `document.querySelectorAll("#log .file-thumb").length`,
      ),
      0,
    );
  },
);

browserTest(
  "dropping a file and pasting an image upload them too",
  async ({ join }) => {
    const ann = await join("ann");
    const bob = await join("bob");
    const png = `new File([Uint8Array.from(atob(${
      js(btoa(String.fromCharCode(...PNG)))
    }), (c) => c.charCodeAt(0))], "pasted.png", { type: "image/png" })`;
    await ann.evaluate(`(() => {
    const data = new DataTransfer();
    data.items.add(${png});
    document.getElementById("message-input").dispatchEvent(
      new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  })()`);
    await waitFor(bob, THUMB_LOADED("ann"), {
      what: "the pasted image on bob's page",
    });
    await ann.evaluate(`(() => {
    const data = new DataTransfer();
    data.items.add(new File(["dropped text"], "notes.txt", { type: "text/plain" }));
    const log = document.getElementById("log");
    log.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
    log.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  })()`);
    await waitFor(
      bob,
      `[...document.querySelectorAll("#log .file-chip .chip-name")].some((n) => n.textContent === "notes.txt")`,
      { what: "the dropped file's chip on bob's page" },
    );
    assert.equal(
      await ann.evaluate(
        `document.querySelector(".conversation").classList.contains("dropping")`,
      ),
      false,
    );
  },
);

browserTest(
  "a direct message's image reaches its two parties only",
  async ({ join, track }) => {
    const ann = await join("ann");
    const bob = await join("bob");
    const cy = await join("cy");
    await ann.click(`#users li[data-user="bob"]`);
    await waitFor(
      ann,
      `document.getElementById("dm-target").dataset.user === "bob"`,
      {
        what: "ann's composer to address bob",
      },
    );
    const path = await tempFile(track, "private.png", PNG);
    await attach(ann, path);
    for (const page of [bob, ann]) {
      await waitFor(page, THUMB_LOADED("ann"), {
        what: "the private image to decode",
      });
      const src = await page.evaluate(
        `document.querySelector("#log .file-thumb img").src`,
      ) as string;
      assert.match(
        src,
        /^blob:/,
        "a private image is fetched with the session",
      );
    }
    assert.equal(
      await bob.evaluate(
        `document.querySelector('#log .msg[data-type="file"]').dataset.to`,
      ),
      "bob",
    );
    // cy sees a later public line, and never the file.
    await ann.click("#dm-cancel");
    await ann.type("#message-input", "public now");
    await ann.keyboard.press("Enter");
    await waitFor(
      cy,
      `[...document.querySelectorAll("#log .msg .text")].some((t) => t.textContent === "public now")`,
      { what: "cy to get the public line" },
    );
    assert.equal(
      await cy.evaluate(
        `document.querySelectorAll('#log .msg[data-type="file"]').length`,
      ),
      0,
    );
  },
);

browserTest(
  "a file over the size limit is refused in place, before it is sent",
  async ({ join, track }) => {
    const ann = await join("ann");
    const path = await tempFile(track, "big.bin", new Uint8Array(5000));
    await waitFor(ann, `fileLimits.maxFileSize === 4000`, {
      what: "the page to know the limit",
    });
    await attach(ann, path);
    await waitFor(
      ann,
      `document.querySelector("#uploads .upload[data-state=error] .up-error")?.textContent.startsWith("Too large")`,
      { what: "the too-large error in place" },
    );
    await ann.click("#uploads .upload button");
    await waitFor(
      ann,
      `document.querySelectorAll("#uploads .upload").length === 0`,
      {
        what: "the error to be dismissed",
      },
    );
  },
  { server: { maxFileSize: 4000 } },
);
