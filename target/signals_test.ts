import assert from "node:assert/strict";
import { SignalSequence } from "./signals.ts";

function recorder() {
  const seen: string[] = [];
  const sequence = new SignalSequence({
    freeze: () => seen.push("freeze"),
    unfreeze: () => seen.push("unfreeze"),
    counters: () => seen.push("counters"),
    ignored: (why) => seen.push(`ignored: ${why}`),
  }, 50);
  return { seen, sequence };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("signals: USR1 USR2 freezes, USR1 USR1 USR2 unfreezes, a lone USR1 prints counters", async () => {
  const { seen, sequence } = recorder();
  sequence.feed("SIGUSR1");
  sequence.feed("SIGUSR2");
  sequence.feed("SIGUSR1");
  sequence.feed("SIGUSR1");
  sequence.feed("SIGUSR2");
  assert.deepEqual(seen, ["freeze", "unfreeze"]);
  sequence.feed("SIGUSR1");
  await wait(80);
  assert.deepEqual(seen, ["freeze", "unfreeze", "counters"]);
  sequence.feed("SIGUSR1");
  sequence.feed("SIGUSR1");
  sequence.feed("SIGUSR1");
  sequence.feed("SIGUSR2");
  assert.equal(seen.at(-1), "ignored: SIGUSR2 after 3 SIGUSR1");
  sequence.close();
});

Deno.test("signals: a SIGUSR2 handled just before its SIGUSR1 still freezes; alone it is ignored", async () => {
  const { seen, sequence } = recorder();
  sequence.feed("SIGUSR2");
  sequence.feed("SIGUSR1");
  assert.deepEqual(seen, ["freeze"]);
  sequence.feed("SIGUSR2");
  await wait(150);
  assert.deepEqual(seen, ["freeze", "ignored: SIGUSR2 without SIGUSR1"]);
  sequence.close();
});
