/**
 * The text of anything thrown: an Error's message, anything else as a string.
 *
 * @module
 */

/** The message of `error` if it is an Error, otherwise `error` as a string. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
