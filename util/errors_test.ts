import assert from "node:assert/strict";
import { errorMessage } from "./errors.ts";

Deno.test("errorMessage: an Error's message, anything else as a string", () => {
  assert.equal(errorMessage(new RangeError("past the end")), "past the end");
  assert.equal(errorMessage("plain"), "plain");
  assert.equal(errorMessage(5), "5");
  assert.equal(errorMessage(undefined), "undefined");
});
