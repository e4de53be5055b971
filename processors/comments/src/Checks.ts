/** The comment checkers' business logic, pure (docs/concepts.md, section 3). */

export type Check = "profanity" | "grammar" | "context"
export const checks: ReadonlyArray<Check> = ["profanity", "grammar", "context"]

export type Verdict = { readonly ok: true } | { readonly ok: false; readonly reason: string }

/** Words the profanity checker refuses (whole words, any case). */
export const profanities: ReadonlyArray<string> = ["frak", "frell", "smeg", "gorram", "shazbot"]

const words = (text: string): ReadonlyArray<string> => text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? []

export const profanity = (text: string): Verdict => {
  const found = words(text).find((w) => profanities.includes(w))
  return found === undefined ? { ok: true } : { ok: false, reason: `contains the profanity "${found}"` }
}

/** Grammar, as far as a reference app goes: some words, and no word twice in a row. */
export const grammar = (text: string): Verdict => {
  const w = words(text)
  if (w.length === 0) return { ok: false, reason: "has no words" }
  const repeated = w.find((word, i) => i > 0 && w[i - 1] === word && !/^\d+$/.test(word))
  return repeated === undefined ? { ok: true } : { ok: false, reason: `repeats the word "${repeated}"` }
}

/** Context: a comment is about the page, not an advertisement for another one. */
export const context = (text: string): Verdict =>
  /\b(https?:\/\/|www\.)/i.test(text) ? { ok: false, reason: "links to other sites are not allowed" } : { ok: true }

export const run: Readonly<Record<Check, (text: string) => Verdict>> = { profanity, grammar, context }
