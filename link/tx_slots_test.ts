import assert from "node:assert/strict";
import { TransmitSlots } from "./tx_slots.ts";

Deno.test("transmit slots: handed out in order, padded to 60 bytes, full after the last, empty after clear", () => {
  const tx = new TransmitSlots(2, 128);
  const first = tx.next();
  first.fill(0xff);
  assert.equal(tx.commit(24), 60);
  assert.deepEqual([...first.subarray(24, 60)], new Array(36).fill(0));
  assert.equal(first[23], 0xff);
  assert.notEqual(tx.next(), first);
  assert.equal(tx.commit(100), 100);
  assert.equal(tx.full, true);
  assert.deepEqual([...tx.lengths], [60, 100]);
  tx.clear();
  assert.equal(tx.full, false);
  assert.equal(tx.next(), first);
});
