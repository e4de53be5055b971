/** Waits for `done` (polled every 20 ms) or `timeoutMs`, whichever comes first; the caller then checks. */
export const until = async (done: () => boolean, timeoutMs = 10_000): Promise<void> => {
  const t0 = Date.now()
  while (!done() && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 20))
}

/** First occurrences, in arrival order. */
export const firsts = <A>(got: ReadonlyArray<A>): Array<A> => {
  const seen = new Set<A>()
  const out: Array<A> = []
  for (const n of got) if (!seen.has(n)) (seen.add(n), out.push(n))
  return out
}
